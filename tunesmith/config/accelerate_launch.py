"""accelerate's launcher config (`accelerate launch --config_file F`, TRL's `--accelerate_config NAME|F`) read as the
tunesmith run it stands for: the DeepSpeed config or FSDP2 engine, mixed precision, `parallelism_config`, and the
number of processes, which tunesmith's own launcher takes from NPROC_PER_NODE (it runs torchrun itself).

A name without a path (zero2, fsdp2, multi_gpu ...) is one of the configs TRL ships in `trl/accelerate_configs/`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tunesmith.utils.errors import ConfigError

# Launch details that change nothing in the run itself (placement, rendezvous, TPU and cluster settings).
LAUNCH_ONLY = frozenset(
    [
        "compute_environment",
        "debug",
        "downcast_bf16",
        "enable_cpu_affinity",
        "gpu_ids",
        "machine_rank",
        "main_process_ip",
        "main_process_port",
        "main_training_function",
        "rdzv_backend",
        "same_network",
        "tpu_env",
        "tpu_use_cluster",
        "tpu_use_sudo",
        "tpu_name",
        "tpu_zone",
        "use_cpu",
        "commands",
        "command_file",
    ]
)
DATA_PARALLEL = ("NO", "MULTI_GPU", "MULTI_CPU", "MULTI_NPU", "MULTI_XPU", "MULTI_MLU", "MULTI_MUSA")
DEEPSPEED_KEYS = frozenset(
    [
        "deepspeed_config_file",
        "zero_stage",
        "offload_optimizer_device",
        "offload_param_device",
        "zero3_init_flag",
        "zero3_save_16bit_model",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "deepspeed_multinode_launcher",
        "deepspeed_hostfile",
        "deepspeed_exclusion_filter",
        "deepspeed_inclusion_filter",
    ]
)
FSDP_IGNORED = frozenset(
    [
        "fsdp_auto_wrap_policy",
        "fsdp_backward_prefetch",
        "fsdp_forward_prefetch",
        "fsdp_cpu_ram_efficient_loading",
        "fsdp_state_dict_type",
        "fsdp_sync_module_states",
        "fsdp_use_orig_params",
        "fsdp_version",
        "fsdp_transformer_layer_cls_to_wrap",
        "fsdp_min_num_params",
    ]
)


def resolve(ref: str) -> Path:
    """The file `ref` names: a path, else a config TRL ships (`zero2` -> trl/accelerate_configs/zero2.yaml)."""
    path = Path(ref)
    if path.is_file():
        return path
    spec = importlib.util.find_spec("trl") if "/" not in ref and not path.suffix else None
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(spec.submodule_search_locations[0]) / "accelerate_configs" / f"{ref}.yaml"
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"accelerate config {ref!r}: no such file (nor one of the configs TRL ships, "
        "trl/accelerate_configs/: zero1, zero2, zero3, fsdp1, fsdp2, multi_gpu, single_gpu)"
    )


def read(ref: str) -> dict[str, Any]:
    """The accelerate config `ref` names, as a mapping."""
    path = resolve(ref)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"accelerate config {path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"accelerate config {path}: must hold a mapping")
    return data


def settings(ref: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """tunesmith settings for the accelerate config `ref` (`context`: the config's other raw keys); asks for its
    number of processes as accelerate would launch them."""
    data = read(ref)
    kind = distributed_type(data)
    out: dict[str, Any] = {}
    if kind == "DEEPSPEED":
        out["deepspeed"] = deepspeed(data.get("deepspeed_config") or {})
    elif kind == "FSDP":
        out |= fsdp(data.get("fsdp_config") or {})
    elif kind not in DATA_PARALLEL:
        raise ConfigError(
            f"accelerate config {ref}: distributed_type {kind} is not run here; "
            "DEEPSPEED, FSDP and data parallel (MULTI_GPU/MULTI_CPU/NO) are"
        )
    out |= _precision(data.get("mixed_precision"), context)
    if data.get("parallelism_config"):
        out["parallelism_config"] = {
            str(k).removeprefix("parallelism_config_"): v for k, v in data["parallelism_config"].items()
        }
    if int(data.get("num_machines") or 1) > 1:
        raise ConfigError(
            f"accelerate config {ref}: num_machines {data['num_machines']}: tunesmith's launcher takes several "
            "nodes from NNODES, NODE_RANK and MASTER_ADDR"
        )
    if (dynamo := data.get("dynamo_config") or {}) and str(
        dynamo.get("dynamo_backend", "NO")
    ).upper() != "NO":
        out["torch_compile"] = True
    unknown = (
        set(data)
        - LAUNCH_ONLY
        - {
            "distributed_type",
            "deepspeed_config",
            "fsdp_config",
            "mixed_precision",
            "parallelism_config",
            "num_machines",
            "num_processes",
            "dynamo_config",
        }
    )
    if unknown:
        raise ConfigError(f"accelerate config {ref}: keys not run here: {', '.join(sorted(unknown))}")
    if kind != "NO" and data.get("num_processes") is not None and "num_processes" not in context:
        processes(data["num_processes"])
    return out


def distributed_type(data: Mapping[str, Any]) -> str:
    """The config's distributed_type, upper case (`NO` unquoted reads as YAML's false)."""
    value = data.get("distributed_type", "NO")
    return "NO" if value is False or value is None else str(value).upper()


def deepspeed(spec: Mapping[str, Any]) -> str | dict[str, Any]:
    """accelerate's `deepspeed_config` section: its JSON file, or the ZeRO config its keys describe."""
    from tunesmith.config.deepspeed_presets import preset

    unknown = set(spec) - DEEPSPEED_KEYS
    if unknown:
        raise ConfigError(f"accelerate deepspeed_config: unknown keys {', '.join(sorted(unknown))}")
    if spec.get("deepspeed_config_file"):
        return str(spec["deepspeed_config_file"])
    stage = int(spec.get("zero_stage", 2))
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"accelerate deepspeed_config.zero_stage: {stage} is not 0, 1, 2 or 3")
    config = copy.deepcopy(preset(f"zero{stage}"))
    zero = config["zero_optimization"]
    for key, target in (
        ("offload_optimizer_device", "offload_optimizer"),
        ("offload_param_device", "offload_param"),
    ):
        device = str(spec.get(key) or "none").lower()
        if device != "none":
            zero[target] = {"device": device}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = bool(spec.get("zero3_save_16bit_model", False))
    for key in ("gradient_accumulation_steps", "gradient_clipping"):
        if spec.get(key) is not None:
            config[key] = spec[key]  # an explicit value must agree with the training arguments, as in HF
    return config


def fsdp(spec: Mapping[str, Any]) -> dict[str, Any]:
    """accelerate's `fsdp_config` section as the fsdp2 engine (FSDP1 configs shard the same way)."""
    dist: dict[str, Any] = {"name": "fsdp2"}
    out: dict[str, Any] = {"dist_config": dist}
    for key, value in spec.items():
        if key == "fsdp_offload_params":
            dist["offload_params"] = _flag(value)
        elif key == "fsdp_reshard_after_forward":
            dist["reshard_after_forward"] = _flag(value) or str(value).upper() == "FULL_SHARD"
        elif key == "fsdp_sharding_strategy":
            dist["reshard_after_forward"] = str(value).upper() in ("FULL_SHARD", "1")
        elif key == "fsdp_activation_checkpointing":
            if _flag(value):
                out["gradient_checkpointing"] = True
        elif key not in FSDP_IGNORED:
            raise ConfigError(f"accelerate fsdp_config: {key} is not run here")
    return out


def processes(value: Any) -> dict[str, Any]:
    """accelerate's `num_processes`: the processes tunesmith's launcher starts (NPROC_PER_NODE), unless the
    environment already sets them (or torchrun started this process)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{value!r} is not a number of processes (an integer >= 1)")
    if "NPROC_PER_NODE" not in os.environ and "WORLD_SIZE" not in os.environ:
        os.environ["NPROC_PER_NODE"] = text
    return {}


def _precision(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """accelerate's mixed_precision applies when the training arguments choose neither bf16 nor fp16 (as HF)."""
    mode = str(value or "no").lower()
    if mode == "fp8":
        raise ConfigError("accelerate mixed_precision fp8 needs FP8 kernels (Hopper GPUs); use bf16")
    if mode == "no" or "bf16" in context or "fp16" in context:
        return {}
    if mode not in ("bf16", "fp16"):
        raise ConfigError(f"accelerate mixed_precision {value!r}: choose no, bf16 or fp16")
    return {mode: True}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")
