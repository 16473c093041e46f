"""Read raw key/value settings from a YAML or JSON file and from command-line overrides, with their origin."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.file_checks import check_yaml_tree, decode_text, unique_json_object
from tunesmith.utils.errors import ConfigError

# A top-level mapping under one of these keys is a section: its keys are read as top-level keys.
SECTION_KEYS = (
    "model_args",
    "data_args",
    "training_args",
    "train_args",
    "parallel_args",
    "profiling_args",
    "preference_args",
    "method_args",
    "generation_args",
    "model",
    "data",
    "train",
    "training",
    "parallel",
    "profiling",
    "optimization",  # MindSpeed-LLM's section for kernel switches
    "preference",
    "methods",
    "generation",
)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key as the user wrote it, its raw value, and where it came from (for error messages)."""

    key: str
    value: Any
    origin: str  # "config.yaml line 3" or "command line"
    layer: int  # 0 = file, 1 = command line: a later layer overrides an earlier one


def read_file(path: str | Path) -> list[Setting]:
    """Settings from a YAML (.yaml/.yml) or JSON (.json) config file, sections flattened."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = decode_text(path.read_bytes(), path.name)
    if path.suffix.lower() == ".json":
        data, lines = _parse_json(text, path), _json_lines(text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        data, lines = _parse_yaml(text, path)
    else:
        raise ConfigError(f"config file {path.name!r}: expected a .yaml, .yml or .json file")
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path.name!r}: expected a mapping of key: value at the top level")
    return [
        Setting(key, value, f"{path.name} line {lines.get(key, '?')}", 0)
        for key, value in _flatten(data, path.name)
    ]


def _flatten(data: dict[str, Any], where: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {key!r} is not a string")
        if key in SECTION_KEYS and isinstance(value, dict):
            items.extend(_flatten(value, where))
        else:
            items.append((key, value))
    return items


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[str, int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        check_yaml_tree(root, path.name)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"config file {path.name}{where}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return data, _yaml_lines(root)


def _yaml_lines(node: Any) -> dict[str, int]:
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        key = key_node.value
        if key in SECTION_KEYS and isinstance(value_node, yaml.MappingNode):
            lines.update(_yaml_lines(value_node))
        else:
            lines.setdefault(key, key_node.start_mark.line + 1)
    return lines


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=unique_json_object(path.name))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path.name} line {exc.lineno}: invalid JSON: {exc.msg}") from None


def _json_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for key in re.findall(r'"([^"\\]+)"\s*:', line):
            lines.setdefault(key, number)
    return lines


def parse_overrides(tokens: list[str]) -> list[Setting]:
    """Settings from `key=value`, `--key value`, `--key=value`, bare `--flag` (meaning true) and multi-value
    flags as ms-swift and HF scripts write them (`--target_modules q_proj v_proj` -> a list)."""
    settings: list[Setting] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            body = token[2:]
            values = _flag_values(tokens, i + 1)
            if "=" in body:
                key, value = body.split("=", 1)
            elif values:
                key, value = body, values[0] if len(values) == 1 else values
                i += len(values)
            else:
                key, value = body, "true"
        elif "=" in token:
            key, value = token.split("=", 1)
        else:
            raise ConfigError(f"command line: cannot read {token!r}; write key=value or --key value")
        if not key:
            raise ConfigError(f"command line: empty key in {token!r}")
        settings.append(Setting(key, value, "command line", 1))
        i += 1
    return settings


def _flag_values(tokens: list[str], start: int) -> list[str]:
    """The values after a `--flag`: the next token (whatever it holds, e.g. `n_embd=10,resid_pdrop=0.2`), then
    every further token up to the next `--flag` or `key=value` override."""
    values: list[str] = []
    for token in tokens[start:]:
        if token.startswith("--") or (values and _is_assignment(token)):
            break
        values.append(token)
    return values


def _is_assignment(token: str) -> bool:
    return "=" in token and re.match(r"^[A-Za-z_][\w.-]*=", token) is not None
