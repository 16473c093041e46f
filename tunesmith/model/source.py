"""Where a model or tokenizer comes from: a built-in name, a local Hugging Face directory or a hub id; refusal of
remote modelling code unless `trust_remote_code` is set; hub/offline failures turned into one-line errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import transformers
from transformers import CONFIG_MAPPING

from tunesmith.utils.builtin import is_builtin, resolve_builtin
from tunesmith.utils.errors import ConfigError

T = TypeVar("T")


def resolve_source(name: str | None, field: str) -> str:
    """The path or hub id to hand to `from_pretrained` for config key `field` (built-ins become their folder)."""
    if not name:
        raise ConfigError(f"{field}: not set; give a local model directory, a hub id or builtin:tiny")
    if is_builtin(name):
        return str(resolve_builtin(name, field=field))
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def check_remote_code(source: str, trust_remote_code: bool, field: str) -> None:
    """Refuse a local model whose config or tokenizer needs its own Python code, unless trust_remote_code is set."""
    if trust_remote_code or not Path(source).is_dir():
        return
    for file_name, key in (("config.json", "model_type"), ("tokenizer_config.json", "tokenizer_class")):
        meta = _read_json(Path(source) / file_name)
        if "auto_map" in meta and not _built_in_class(key, meta.get(key)):
            raise ConfigError(
                f"{field}: {source} ships its own modelling code ('auto_map' in {file_name}, {key} "
                f"{meta.get(key)!r} is not built into transformers); tunesmith does not run it unless you set "
                "trust_remote_code: true (only do so if you trust that code)"
            )


def _built_in_class(key: str, value: Any) -> bool:
    if key == "model_type":
        return value in CONFIG_MAPPING
    return isinstance(value, str) and hasattr(transformers, value.removesuffix("Fast"))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err


def hub_kwargs(margs: Any) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments shared by config, tokenizer and model loading."""
    return {
        "trust_remote_code": bool(margs.trust_remote_code),
        "revision": margs.model_revision or "main",
        "cache_dir": margs.cache_dir,
        "token": margs.hf_hub_token,
    }


def load_or_explain(load: Callable[[], T], source: str, field: str) -> T:
    """Run `load()`; an unreadable local path or an unreachable hub id becomes a ConfigError naming `field`."""
    try:
        return load()
    except OSError as err:
        if Path(source).exists():
            raise ConfigError(f"{field}: cannot load {source}: {_first_line(err)}") from err
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        why = (
            "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the cache"
            if offline
            else _first_line(err)
        )
        raise ConfigError(
            f"{field}: {source!r} is not a local directory and could not be fetched from the hub: {why}; "
            "download it first (e.g. `hf download`) and give its local path"
        ) from err
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise ConfigError(
                f"{field}: {source} needs its own modelling code; set trust_remote_code: true only if you trust it"
            ) from err
        raise


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
