"""Turn a config into plain data (for `plan --json`, saved `tunesmith_config.yaml` and loggers), secrets removed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.loader import TunesmithConfig
from tunesmith.config.plugins import PluginSpec
from tunesmith.config.schema import fields_by_name

REDACTED = "***"


def plain(value: Any) -> Any:
    """A JSON/YAML-safe copy of an argument value."""
    if isinstance(value, PluginSpec):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(cfg: TunesmithConfig, *, redact: bool = True) -> dict[str, dict[str, Any]]:
    """Section -> {canonical name: value}; secret arguments that are set show as `***` (or are dropped)."""
    fields = fields_by_name()
    out: dict[str, dict[str, Any]] = {}
    for section, args in cfg.sections().items():
        values: dict[str, Any] = {}
        for f in dataclasses.fields(args):
            value = getattr(args, f.name)
            if redact and fields[f.name].info.secret and value is not None:
                value = REDACTED
            values[f.name] = plain(value)
        out[section] = values
    return out


def save_config(
    cfg: TunesmithConfig, path: str | Path, scrub: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> Path:
    """Write the resolved config, secrets removed, as a flat YAML file that `tunesmith train` accepts back;
    `scrub` also hides secret values wherever else they appear (e.g. a token reused in `run_name`)."""
    flat: dict[str, Any] = {}
    fields = fields_by_name()
    for section in config_to_dict(cfg, redact=True).values():
        for name, value in section.items():
            if fields[name].info.secret and value == REDACTED:
                continue
            # values at their default are left out unless set: two names of one setting (an alias pair such as
            # dataloader_num_workers / batching_workers) then never contradict each other when read back
            if cfg.is_set(name) or value != plain(fields[name].default):
                flat[name] = value
    if scrub is not None:
        flat = scrub(flat)
    path = Path(path)
    path.write_text(yaml.safe_dump(flat, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
