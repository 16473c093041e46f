"""accelerate's `parallelism_config` (ParallelismConfig as a dict) mapped onto tunesmith's sizes: dp_shard_size ->
fsdp_size (FSDP2 shard groups), tp_size -> tp_size, cp_size / sp_size -> cp_size (Ulysses), dp_replicate_size is
what is left of the world (checked when the world size is known)."""

from __future__ import annotations

from typing import Any

from tunesmith.config.loader import TunesmithConfig
from tunesmith.utils.errors import ConfigError

SIZES = {"dp_shard_size": "fsdp_size", "tp_size": "tp_size", "cp_size": "cp_size", "sp_size": "cp_size"}
KNOWN = ("dp_replicate_size", *SIZES)


def apply_parallelism_config(cfg: TunesmithConfig) -> None:
    """Set fsdp_size / tp_size / cp_size from `parallelism_config`; a size the config also sets differently, an
    unknown key or a handler object is an error naming it."""
    spec: dict[str, Any] | None = cfg.parallel.parallelism_config
    if not spec:
        return
    where = cfg.where("parallelism_config")
    for key in spec:
        if key.endswith("_handler"):
            raise ConfigError(
                f"{where}: {key} is not used; context parallel is Ulysses (cp_type), tensor parallel is set by tp_size"
            )
        if key not in KNOWN:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(KNOWN)}")
    sizes = {key: _size(spec, key, where) for key in KNOWN if spec.get(key) is not None}
    if sizes.get("cp_size", 1) > 1 and sizes.get("sp_size", 1) > 1:
        raise ConfigError(f"{where}: cp_size and sp_size both split the sequence here (Ulysses); give one")
    if sizes.get("dp_replicate_size", 1) > 1 and sizes.get("dp_shard_size", 1) == 1:
        raise ConfigError(
            f"{where}: dp_replicate_size > 1 with dp_shard_size 1 is plain data parallel; drop parallelism_config"
        )
    for key, field in SIZES.items():
        if sizes.get(key, 1) > 1:
            _set(cfg, field, sizes[key], f"{where}.{key}")


def _size(spec: dict[str, Any], key: str, where: str) -> int:
    value = spec[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    return value


def _set(cfg: TunesmithConfig, field: str, value: int, source: str) -> None:
    current = getattr(cfg.parallel, field)
    if cfg.is_set(field) and current != value:
        raise ConfigError(f"{source} = {value} and {cfg.where(field)} = {current} disagree")
    setattr(cfg.parallel, field, value)
