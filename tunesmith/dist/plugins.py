"""The `dist_config` plugins: `fsdp2` and `deepspeed`, with their parameter dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch.distributed as dist
from torch import nn

from tunesmith.config.fields import arg
from tunesmith.config.plugins import DIST
from tunesmith.utils.errors import ConfigError

PRECISIONS = ("bf16", "fp16", "fp32")


@dataclasses.dataclass
class Fsdp2Params:
    """FSDP2 options (the mesh and module patterns come from ParallelArguments)."""

    mixed_precision: str | None = arg(
        None,
        "Compute dtype of the sharded parameters: bf16, fp16 or fp32.",
        default_note="effective default: param_dtype when set, else the training precision (bf16/fp16), else fp32.",
    )
    reshard_after_forward: bool = True
    offload_params: bool = False
    pin_memory: bool = True
    dcp_path: str | None = (
        None  # a torch distributed checkpoint to load the weights from (fast sharded start)
    )

    def __post_init__(self) -> None:
        if self.mixed_precision is not None and self.mixed_precision not in PRECISIONS:
            raise ConfigError(
                f"dist_config.fsdp2.mixed_precision: {self.mixed_precision!r} is not one of {', '.join(PRECISIONS)}"
            )


@dataclasses.dataclass
class DeepSpeedParams:
    """A DeepSpeed JSON: `config_file` (a path), or `config` (the same JSON inline, from HF `deepspeed: {...}`)."""

    config_file: str | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.config_file is None) == (self.config is None):
            raise ConfigError(
                "dist_config.deepspeed: give exactly one of config_file (a JSON path) or config"
            )
        if self.config_file is not None:  # a missing or broken JSON is an error before anything loads
            from tunesmith.dist.deepspeed import load_ds_config

            load_ds_config(self.config_file, key="deepspeed")


def fsdp_param_dtype(cfg: Any, params: Fsdp2Params) -> str:
    """The compute dtype: `param_dtype` when the user set it, else `mixed_precision`, else bf16/fp16 when the run
    trains in bf16/fp16, else fp32 (never lower precision than the user asked for)."""
    if cfg.is_set("param_dtype"):
        return cfg.parallel.param_dtype
    if params.mixed_precision is not None:
        return params.mixed_precision
    if cfg.train.bf16:
        return "bf16"
    return "fp16" if cfg.train.fp16 else "fp32"


@DIST.register("fsdp2", params=Fsdp2Params)
def build_fsdp2(model: nn.Module, cfg: Any, mesh: Any, params: Fsdp2Params, **kwargs: Any) -> nn.Module:
    """Shard `model` with FSDP2 over `mesh` (the dp_shard or dp_replicate x dp_shard mesh) from `cfg.parallel`;
    `kwargs` go to `apply_fsdp2` (e.g. skip_params for expert-parallel weights). With `init_model_with_meta_device`
    (see `receives_weights_from_rank0`) rank 0's weights and buffers are broadcast into every rank's shards."""
    from tunesmith.dist.checkpoint_io import load_sharded
    from tunesmith.dist.fsdp2 import apply_fsdp2, load_full_state_from_rank0
    from tunesmith.model.loader import receives_weights_from_rank0

    par = cfg.parallel
    from_rank0 = receives_weights_from_rank0(cfg)
    full = model.state_dict() if from_rank0 and dist.get_rank() == 0 else None
    apply_fsdp2(
        model,
        mesh,
        modules=par.fsdp_modules,
        ignored_modules=par.ignored_modules or (),
        reshard_after_forward=params.reshard_after_forward and par.reshard_after_forward,
        shard_placement_fn=par.shard_placement_fn,
        param_dtype=fsdp_param_dtype(cfg, params),
        reduce_dtype=par.reduce_dtype,
        offload_params=params.offload_params,
        pin_memory=params.pin_memory,
        num_to_forward_prefetch=par.num_to_forward_prefetch,
        num_to_backward_prefetch=par.num_to_backward_prefetch,
        **kwargs,
    )
    if from_rank0:
        load_full_state_from_rank0(model, full)
    if params.dcp_path:
        load_sharded(params.dcp_path, model)
    return model


@DIST.register("deepspeed", params=DeepSpeedParams)
def build_deepspeed(
    model: nn.Module,
    cfg: Any,
    data_parallel_size: int,
    params: DeepSpeedParams,
    *,
    optimizer: Any = None,
    warmup_steps: int = 0,
    total_steps: int | None = None,
) -> Any:
    """A DeepSpeed engine for `model` from the user's JSON with "auto" filled from `cfg` and the step plan
    (`warmup_steps`, `total_steps`); `optimizer` is the one the config asks for (a JSON `optimizer` block wins). The
    caller owns gradient accumulation and the learning-rate schedule: each backward accumulates, each engine step is
    one optimizer step."""
    from tunesmith.dist.deepspeed import build_engine

    train = cfg.train
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    ds = resolved_ds_config(cfg, params, data_parallel_size, hidden, warmup_steps, total_steps)
    return build_engine(
        model,
        ds,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        adam_betas=(train.adam_beta1, train.adam_beta2),
        adam_epsilon=train.adam_epsilon,
        optimizer=optimizer,
    )


def resolved_ds_config(
    cfg: Any,
    params: DeepSpeedParams,
    data_parallel_size: int,
    hidden_size: int | None = None,
    warmup_steps: int = 0,
    total_steps: int | None = None,
) -> dict[str, Any]:
    """The user's DeepSpeed JSON with "auto" filled from `cfg`, after every check tunesmith makes of it (also run
    by `tunesmith plan`, before any weight loads)."""
    from tunesmith.dist.deepspeed import fill_auto, load_ds_config

    par, train = cfg.parallel, cfg.train
    if par.tp_size > 1 or par.cp_size > 1 or par.ep_size > 1:
        raise ConfigError(
            "dist_config: deepspeed does not combine with tp_size/cp_size/ep_size > 1; use fsdp2"
        )
    source = str(params.config_file or cfg.where("dist_config"))
    raw = load_ds_config(params.config_file or params.config, key=cfg.where("dist_config"))
    if raw.get("managed_gradient_accumulation", False):
        raise ConfigError(
            f"{source}: managed_gradient_accumulation must be false (tunesmith's loop accumulates gradients); "
            "remove it"
        )
    if "scheduler" in raw:
        raise ConfigError(
            f"{source}: scheduler: tunesmith runs the learning-rate schedule itself (lr_scheduler_type, warmup_steps "
            "or warmup_ratio); remove the DeepSpeed scheduler block (WarmupLR = constant_with_warmup, "
            "WarmupDecayLR = linear, WarmupCosineLR = cosine)"
        )
    ds = fill_auto(
        raw,
        micro_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        data_parallel_size=data_parallel_size,
        learning_rate=train.learning_rate,
        max_grad_norm=train.max_grad_norm,
        bf16=train.bf16,
        fp16=train.fp16,
        weight_decay=train.weight_decay,
        adam_betas=(train.adam_beta1, train.adam_beta2),
        adam_epsilon=train.adam_epsilon,
        hidden_size=hidden_size,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        source=source,
    )
    ds["managed_gradient_accumulation"] = False
    ds.setdefault("zero_allow_untested_optimizer", True)  # any torch optimizer the config names, as in HF
    return ds
