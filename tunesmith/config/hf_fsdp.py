"""HF Trainer's `fsdp` / `fsdp_config` arguments translated into tunesmith's `fsdp2` dist_config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.utils.errors import ConfigError

HF_FSDP_OPTIONS = (
    "full_shard",
    "shard_grad_op",
    "offload",
    "auto_wrap",
    "no_shard",
    "hybrid_shard",
    "hybrid_shard_zero2",
)
HF_FSDP_CONFIG_KEYS = (
    "reshard_after_forward",
    "offload_params",
    "cpu_offload",
    "version",
    "auto_wrap_policy",
    "backward_prefetch",
    "forward_prefetch",
    "use_orig_params",
    "sync_module_states",
    "limit_all_gathers",
    "state_dict_type",
)


def hf_fsdp_spec(fsdp: bool | str | list[str], fsdp_config: str | dict[str, Any] | None) -> dict[str, Any]:
    """HF `fsdp` options (e.g. "full_shard offload auto_wrap") and `fsdp_config` as a `dist_config` dict for the
    fsdp2 plugin. Options FSDP2 would change the meaning of are errors, never dropped."""
    options = fsdp.split() if isinstance(fsdp, str) else ([] if isinstance(fsdp, bool) else list(fsdp))
    spec: dict[str, Any] = {"name": "fsdp2"}
    for option in options:
        if option not in HF_FSDP_OPTIONS:
            raise ConfigError(f"fsdp: unknown option {option!r}; allowed: {', '.join(HF_FSDP_OPTIONS)}")
        if option == "no_shard":
            raise ConfigError("fsdp: no_shard is plain data parallel; drop fsdp (DDP is the default)")
        if option.startswith("hybrid_shard"):
            raise ConfigError(
                f"fsdp: {option} is set with fsdp_size (ranks per shard group) under dist_config fsdp2"
            )
        if option == "shard_grad_op":
            spec["reshard_after_forward"] = False
        if option == "offload":
            spec["offload_params"] = True
    for raw_key, value in _read_fsdp_config(fsdp_config).items():
        key = raw_key.removeprefix("fsdp_")
        if key in ("transformer_layer_cls_to_wrap", "min_num_params", "activation_checkpointing"):
            hint = "gradient_checkpointing" if key == "activation_checkpointing" else "fsdp_modules patterns"
            raise ConfigError(
                f"fsdp_config.{raw_key}: use {hint} instead (tunesmith wraps modules by name pattern)"
            )
        if key not in HF_FSDP_CONFIG_KEYS:
            raise ConfigError(
                f"fsdp_config: unknown key {raw_key!r}; known: {', '.join(HF_FSDP_CONFIG_KEYS)}"
            )
        if key == "reshard_after_forward":
            spec[key] = value if isinstance(value, bool) else str(value).upper() != "SHARD_GRAD_OP"
        elif key in ("offload_params", "cpu_offload"):
            spec["offload_params"] = bool(value)
    return spec


def _read_fsdp_config(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """`fsdp_config` as HF accepts it: a mapping, or the path of a JSON file holding one."""
    if not isinstance(value, str):
        return value or {}
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"fsdp_config: file {value!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"fsdp_config: {value} line {err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"fsdp_config: {value} must hold a JSON object")
    return data
