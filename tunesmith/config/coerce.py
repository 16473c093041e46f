"""Turn values from YAML, JSON or the command line into the types the argument dataclasses declare."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from tunesmith.utils.errors import ConfigError

_NONE_WORDS = ("None", "null", "~")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def type_name(hint: Any) -> str:
    """A short readable name of a type hint, e.g. `int | float`, `list[str]`."""
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    return getattr(hint, "__name__", str(hint))


def coerce_value(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` to `hint`; raise ConfigError naming `key` when it cannot be converted."""
    try:
        return _coerce(value, hint)
    except _Mismatch:
        raise ConfigError(f"{key}: expected {type_name(hint)}, got {value!r}") from None


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(hint))
    if hint is type(None):
        if value is None or (isinstance(value, str) and value in _NONE_WORDS):
            return None
        raise _Mismatch
    if origin is list:
        return _coerce_list(value, typing.get_args(hint)[0] if typing.get_args(hint) else Any)
    if origin is dict or hint is dict:
        return _coerce_dict(value)
    scalar = _SCALARS.get(hint)
    if scalar is None:
        raise TypeError(f"unsupported argument type {hint!r}")
    return scalar(value)


def _coerce_union(value: Any, members: tuple[Any, ...]) -> Any:
    if type(None) in members and (value is None or (isinstance(value, str) and value in _NONE_WORDS)):
        return None
    if isinstance(value, str) and "," in value and any(typing.get_origin(m) is list for m in members):
        value = [part.strip() for part in value.split(",") if part.strip()]  # "q_proj,v_proj" is a list
    ordered = sorted((m for m in members if m is not type(None)), key=_union_priority(value))
    for member in ordered:
        try:
            return _coerce(value, member)
        except _Mismatch:
            continue
    raise _Mismatch


def _union_priority(value: Any):
    """Try the member that matches the value's own Python type first. A string is tried as bool, int and float,
    then as JSON (`[...]` / `{...}`), and only then as a plain string (so "true" is a bool for `bool | str`)."""
    text = value.strip() if isinstance(value, str) else None

    def rank(member: Any) -> int:
        origin = typing.get_origin(member) or member
        if text is None:
            if isinstance(value, origin) and not (origin is int and isinstance(value, bool)):
                return 0
            return 1
        json_like = (origin is list and text.startswith("[")) or (origin is dict and text.startswith("{"))
        order = {bool: 1, int: 2, float: 3, str: 5}
        return 4 if json_like else order.get(origin, 6)

    return rank


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Mismatch


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = _parse_float(text)
            if number.is_integer() and ("e" in text.lower()):
                return int(number)
    raise _Mismatch


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _parse_float(value.strip())
    raise _Mismatch


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _Mismatch from None


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Mismatch


def _coerce_list(value: Any, item: Any) -> list:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = _parse_json(text)
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    elif isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise _Mismatch
    return [_coerce(v, item) for v in value]


def _coerce_dict(value: Any) -> dict:
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _parse_json(value.strip())
    if not isinstance(value, dict):
        raise _Mismatch
    return value


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise _Mismatch from None


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
