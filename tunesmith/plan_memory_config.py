"""`tunesmith plan`'s memory section: the model shape from config.json, the run settings from the config, the
breakdown, and the largest micro batch that fits a memory budget (`--memory 80GB`, the device's, H100/H200)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from tunesmith.config import TunesmithConfig
from tunesmith.plan_memory import GIB, LINEARS, ModelShape, RunSetup, estimate, largest_micro_batch
from tunesmith.utils.builtin import is_builtin, resolve_builtin
from tunesmith.utils.errors import ConfigError

# memory the allocator can hand out on these cards (nvidia-smi's total), less 10% for the CUDA context,
# kernels' workspaces and fragmentation, which max_memory_allocated does not count
GPU_TARGETS = {"H100 80GB": 81559 * 2**20, "H200 141GB": 143771 * 2**20}
USABLE = 0.9
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_memory(text: str) -> int:
    """Bytes of a size such as `80GB`, `79.6GiB` or `81559MiB` (GB = 10^9 bytes, GiB = 2^30)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in UNITS:
        raise ConfigError(f"--memory: {text!r} is not a size such as 80GB, 79.6GiB or 81559MiB")
    return int(float(match.group(1)) * UNITS[unit])


def read_model_config(name: str | None) -> dict[str, Any] | None:
    """The model's config.json as a dict (built-in, local folder, or the local hub cache), or None."""
    if not name:
        return None
    if is_builtin(name):
        path: Path | None = resolve_builtin(name) / "config.json"
    elif Path(name).is_dir():
        path = Path(name) / "config.json"
    else:
        path = _cached_hub_config(name)
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def _cached_hub_config(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json")
    return Path(found) if isinstance(found, str) else None


def run_setup(cfg: TunesmithConfig, world_size: int) -> RunSetup:
    """The memory-relevant settings of `cfg` on `world_size` processes."""
    from tunesmith.config.validate import data_parallel_size

    margs, train = cfg.model, cfg.train
    dp = data_parallel_size(cfg, world_size)
    sharding, extra = _sharding(cfg, dp)
    param_dtype = {"bf16": "bfloat16", "fp16": "float16", "bfloat16": "bfloat16", "float16": "float16"}.get(
        str(margs.torch_dtype), "float32"
    )
    autocast = "bf16" if train.bf16 else "fp16" if train.fp16 else None
    if extra.pop("engine_casts", False):  # DeepSpeed casts the model to bf16/fp16, with fp32 masters
        param_dtype, autocast = ("bfloat16" if train.bf16 else "float16"), None
    return RunSetup(
        micro_batch=train.per_device_train_batch_size,
        seq_len=cfg.data.cutoff_len,
        param_dtype=param_dtype,
        autocast=autocast if param_dtype == "float32" else None,
        finetuning=margs.finetuning_type,
        lora_rank=margs.lora_rank,
        lora_targets=_lora_targets(margs.target_modules),
        trainable_layers=abs(margs.freeze_trainable_layers),
        quant_bits=margs.quantization_bit,
        optimizer=train.optim_config.name if train.optim_config is not None else train.optim,
        galore_rank=cfg.methods.galore_rank if cfg.methods.use_galore else 0,
        sharding=sharding,
        world=dp,
        checkpointing=bool(train.gradient_checkpointing),
        attention=margs.attn_impl or "sdpa",
        chunk_size=train.chunk_loss_size,
        accumulation=train.gradient_accumulation_steps,
        **extra,
    )


def _lora_targets(value: str | list[str]) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value)
    names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if any(n in ("all", "all-linear") for n in names):
        return LINEARS
    return tuple(n for n in LINEARS if n in names) or LINEARS


def _sharding(cfg: TunesmithConfig, dp: int) -> tuple[str, dict[str, Any]]:
    spec = cfg.train.dist_config
    if spec is None:
        return ("ddp" if dp > 1 else "none"), {}
    if spec.name == "fsdp2":
        return "fsdp2", {"offload_params": bool(spec.params.offload_params)}
    if spec.name == "deepspeed":
        from tunesmith.dist.deepspeed import load_ds_config, zero_stage

        ds = load_ds_config(spec.params.config_file or spec.params.config, key=cfg.where("dist_config"))
        zero = ds.get("zero_optimization", {})
        stage = zero_stage(ds)
        half = _enabled(ds, "bf16", cfg.train.bf16) or _enabled(ds, "fp16", cfg.train.fp16)
        return ("ddp" if stage == 0 else f"zero{stage}"), {
            "offload_optimizer": zero.get("offload_optimizer", {}).get("device", "none") != "none",
            "offload_params": zero.get("offload_param", {}).get("device", "none") != "none",
            "master_weights": half,
            "engine_casts": half,
        }
    return ("ddp" if dp > 1 else "none"), {}


def _enabled(ds: dict[str, Any], key: str, ours: bool) -> bool:
    value = ds.get(key, {}).get("enabled", False)
    return ours if value == "auto" else bool(value)


def device_memory() -> tuple[str, int]:
    """(name, bytes) of this machine's first GPU, or of its RAM when it has none."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.name, int(props.total_memory)
    return "this machine's RAM", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_plan(cfg: TunesmithConfig, world_size: int, memory: str | None = None) -> dict[str, Any]:
    """The memory section of `tunesmith plan`: breakdown (bytes), and the largest micro batch per target."""
    config = read_model_config(cfg.model.model_name_or_path)
    if config is None:
        return {"note": f"no config.json found locally for {cfg.model.model_name_or_path!r}; no estimate"}
    shape, run = ModelShape.from_config(config), run_setup(cfg, world_size)
    result = estimate(shape, run)
    name, size = ("--memory", parse_memory(memory)) if memory else device_memory()
    targets = {name: (size, 1.0), **{k: (v, USABLE) for k, v in GPU_TARGETS.items()}}
    fits = {
        label: {"bytes": int(total * share), "largest_micro_batch": largest_micro_batch(shape, run, int(total * share))}
        for label, (total, share) in targets.items()
    }  # fmt: skip
    return {
        "shape": dataclasses.asdict(shape),
        "run": dataclasses.asdict(run),
        "estimate": result.as_dict(),
        "fits": fits,
    }


def format_memory(section: dict[str, Any]) -> list[str]:
    """The text lines `tunesmith plan` prints for the memory section."""
    if "note" in section:
        return ["memory:", f"  {section['note']}"]
    est, run = section["estimate"], section["run"]
    lines = [
        "memory (per device, estimated from config.json):",
        f"  parameters: {est['params']:,} ({est['trainable']:,} trainable)",
        f"  setup: micro batch {run['micro_batch']} x {run['seq_len']} tokens, {run['param_dtype']}"
        f"{' + ' + run['autocast'] + ' autocast' if run['autocast'] else ''}, {run['optimizer']}, "
        f"{run['sharding']} on {run['world']} rank(s), checkpointing {'on' if run['checkpointing'] else 'off'}, "
        f"attention {run['attention']}, loss {'chunked ' + str(run['chunk_size']) if run['chunk_size'] else 'full'}",
    ]
    parts = (
        "weights",
        "gradients",
        "optimizer",
        "activations",
        "backward_scratch",
        "logits",
        "autocast_copies",
        "working",
    )
    lines += [f"  {part}: {_gib(est[part])}" for part in parts if est[part]]
    if est["offloaded"]:
        lines.append(f"  offloaded to host: {_gib(est['offloaded'])}")
    lines.append(f"  peak: {_gib(est['peak'])} (during the {est['peak_phase']})")
    for label, fit in section["fits"].items():
        lines.append(
            f"  largest micro batch in {label} ({_gib(fit['bytes'])} usable): {fit['largest_micro_batch']}"
        )
    return lines


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"
