"""Cross-argument rules, checked before any model or data is loaded, and the normalisations they imply."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from tunesmith.config.accelerate_parallelism import apply_parallelism_config
from tunesmith.config.hf_fsdp import hf_fsdp_spec
from tunesmith.config.loader import TunesmithConfig
from tunesmith.config.method_rules import check_method_options
from tunesmith.config.plugins import (
    BATCHING,
    BUILTIN_PLUGIN_MODULES,
    DIST,
    LR_SCHEDULER,
    OPTIM,
    PluginSpec,
    import_plugin_modules,
)
from tunesmith.config.profiling_rules import check_profiling
from tunesmith.config.unsupported import check_unsupported
from tunesmith.config.value_rules import check_values
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def validate_config(cfg: TunesmithConfig, world_size: int | None = None, *, user_code: bool = True) -> None:
    """Check every cross-argument rule and fill derived values; raise ConfigError naming the keys. Without
    `user_code` (commands that only look: plan, data) the config's `plugin_modules` are not imported, and the
    plugins only they register are left unchecked (a config is code: only training runs it)."""
    import_plugin_modules(BUILTIN_PLUGIN_MODULES)
    deferred: dict[str, Any] = {}
    if user_code:
        import_plugin_modules(cfg.train.plugin_modules)
    elif cfg.train.plugin_modules:
        deferred = _defer_user_plugins(cfg)
    for rule in RULES:
        rule(cfg)
    check_parallel_sizes(cfg, world_size if world_size is not None else dist_env.world_size())
    for key, value in deferred.items():
        setattr(cfg.train, key, _unchecked(value) if isinstance(value, dict) else value)


def _unchecked(value: dict[str, Any]) -> PluginSpec:
    """A plugin setting kept as given (its plugin was not imported), in the form the rest of the code reads."""
    params = {k: v for k, v in value.items() if k != "name"}
    fields = [(k, Any, dataclasses.field(default=v)) for k, v in params.items()]
    return PluginSpec(str(value["name"]), dataclasses.make_dataclass("UncheckedParams", fields)())


def _defer_user_plugins(cfg: TunesmithConfig) -> dict[str, Any]:
    """Take out of `cfg` the plugin settings that name no built-in plugin (a `plugin_modules` one), for the rules
    to skip; returns them to put back."""
    train, deferred = cfg.train, {}
    for key, registry in (
        ("dist_config", DIST),
        ("optim_config", OPTIM),
        ("lr_scheduler_config", LR_SCHEDULER),
    ):
        value = getattr(train, key)
        if isinstance(value, dict) and value.get("name") not in registry.names():
            deferred[key] = value
            setattr(train, key, None)
    if train.batching_strategy not in BATCHING.names():
        deferred["batching_strategy"] = train.batching_strategy
        train.batching_strategy = "normal"
    logger.warning(
        "plugin_modules %s not imported: only training runs code named in a config; %s checked when it starts",
        ", ".join(train.plugin_modules),
        ", ".join(deferred) or "nothing else is",
    )
    return deferred


def _both(cfg: TunesmithConfig, a: str, b: str, why: str) -> ConfigError:
    return ConfigError(f"{cfg.where(a)} and {cfg.where(b)} cannot be used together: {why}")


def _required(cfg: TunesmithConfig) -> None:
    if not cfg.model.model_name_or_path:
        raise ConfigError(
            "model_name_or_path (or model) is required: a local Hugging Face model directory, or builtin:tiny"
        )


def _precision(cfg: TunesmithConfig) -> None:
    if cfg.train.fp16 and cfg.train.bf16:
        raise _both(cfg, "fp16", "bf16", "choose one half-precision type")
    if cfg.train.bf16_full_eval and cfg.train.fp16_full_eval:
        raise _both(cfg, "bf16_full_eval", "fp16_full_eval", "choose one evaluation precision")


def _streaming(cfg: TunesmithConfig) -> None:
    data = cfg.data
    if not data.streaming:
        return
    if data.max_samples is not None:
        raise _both(cfg, "streaming", "max_samples", "a stream has no length to truncate; use max_steps")
    if isinstance(data.val_size, float) and not float(data.val_size).is_integer():
        raise ConfigError(
            f"{cfg.where('val_size')}: with streaming, val_size must be a whole number of examples"
        )
    if cfg.train.max_steps <= 0:
        raise ConfigError(
            f"{cfg.where('streaming')}: streaming needs max_steps > 0 (a stream has no epoch length)"
        )


def _compile(cfg: TunesmithConfig) -> None:
    train = cfg.train
    if train.torch_compile_backend is not None or train.torch_compile_mode is not None:
        train.torch_compile = True  # as transformers does


def _eval_split(cfg: TunesmithConfig) -> None:
    if cfg.data.eval_dataset is not None and cfg.data.val_size:
        raise _both(
            cfg, "eval_dataset", "val_size", "either name an eval dataset or split one off the train set"
        )


def _masking(cfg: TunesmithConfig) -> None:
    if cfg.data.train_on_prompt and cfg.data.mask_history:
        raise _both(cfg, "train_on_prompt", "mask_history", "one trains on prompts, the other masks history")


def _packing(cfg: TunesmithConfig) -> None:
    if cfg.data.neat_packing and not cfg.data.packing:
        cfg.data.packing = True


def _eval_strategy(cfg: TunesmithConfig) -> None:
    train = cfg.train
    if train.eval_strategy != "no" and train.do_eval is None:
        train.do_eval = True
    if train.eval_strategy == "steps" and train.eval_steps is None:
        train.eval_steps = train.logging_steps


def _best_model(cfg: TunesmithConfig) -> None:
    train = cfg.train
    if train.load_best_model_at_end or train.save_strategy == "best":
        if train.metric_for_best_model is None:
            train.metric_for_best_model = "loss"
        if train.greater_is_better is None:
            train.greater_is_better = not train.metric_for_best_model.endswith("loss")
    if not train.load_best_model_at_end:
        return
    if train.eval_strategy == "no":
        raise ConfigError(
            f"{cfg.where('load_best_model_at_end')}: needs eval_strategy 'steps' or 'epoch', not 'no'"
        )
    if train.save_strategy not in (train.eval_strategy, "best"):
        raise ConfigError(
            f"{cfg.where('load_best_model_at_end')}: save_strategy ({train.save_strategy!r}) must match "
            f"eval_strategy ({train.eval_strategy!r}) or be 'best'"
        )
    if train.save_strategy == "steps" and _not_multiple(train.save_steps, train.eval_steps):
        raise ConfigError(
            f"{cfg.where('load_best_model_at_end')}: save_steps ({train.save_steps}) must be a multiple of "
            f"eval_steps ({train.eval_steps}) so the best evaluation has a checkpoint"
        )


def _not_multiple(save: float, every: float | None) -> bool:
    if every is None or every == 0:
        return False
    ratio = save / every
    return abs(ratio - round(ratio)) > 1e-9


def _loader_workers(cfg: TunesmithConfig) -> None:
    """HF's `dataloader_num_workers` is tunesmith's `batching_workers` (threads building micro-batches); 0 builds
    them in the training thread, as HF's 0 does."""
    train = cfg.train
    if cfg.is_set("dataloader_num_workers"):
        if cfg.is_set("batching_workers") and train.batching_workers != train.dataloader_num_workers:
            raise _both(
                cfg,
                "dataloader_num_workers",
                "batching_workers",
                "both set the batch-building threads, to different numbers",
            )
        train.batching_workers = train.dataloader_num_workers
    if train.dataloader_prefetch_factor is not None and not train.batching_workers:
        raise ConfigError(
            f"{cfg.where('dataloader_prefetch_factor')}: only used with dataloader_num_workers > 0 (as in torch)"
        )


def _fsdp_modules(cfg: TunesmithConfig) -> None:
    if not cfg.parallel.fsdp_modules:
        raise ConfigError(
            f"{cfg.where('fsdp_modules')}: must list at least one module pattern, e.g. model.layers.{{}}"
        )


def _interleave(cfg: TunesmithConfig) -> None:
    data = cfg.data
    if data.interleave_probs is None:
        return
    if data.mix_strategy == "concat":
        raise ConfigError(
            f"{cfg.where('interleave_probs')}: only used with mix_strategy interleave_under or interleave_over"
        )
    try:
        probs = [float(p) for p in str(data.interleave_probs).split(",")]
    except ValueError:
        raise ConfigError(
            f"{cfg.where('interleave_probs')}: expected comma-separated numbers, e.g. 0.7,0.3"
        ) from None
    if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError(
            f"{cfg.where('interleave_probs')}: probabilities must be >= 0 and sum to 1, got {probs}"
        )


def _split(cfg: TunesmithConfig) -> None:
    parts = str(cfg.data.split).split(",")
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        weights = []
    if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"{cfg.where('split')}: expected three non-negative weights 'train,valid,test', e.g. 98,2,0"
        )


def _plugins(cfg: TunesmithConfig) -> None:
    train = cfg.train
    _resolve_dist_config(cfg)
    for key, registry in (
        ("dist_config", DIST),
        ("optim_config", OPTIM),
        ("lr_scheduler_config", LR_SCHEDULER),
    ):
        value = getattr(train, key)
        if value is not None:
            setattr(train, key, registry.parse(value, cfg.where(key)))
    if train.optim_config is not None and cfg.is_set("optim"):
        raise _both(cfg, "optim", "optim_config", "optim_config chooses the optimizer; drop one")
    if train.lr_scheduler_config is not None and cfg.is_set("lr_scheduler_type"):
        raise _both(
            cfg, "lr_scheduler_type", "lr_scheduler_config", "lr_scheduler_config chooses the schedule"
        )
    BATCHING.get(train.batching_strategy)


def _resolve_dist_config(cfg: TunesmithConfig) -> None:
    """HF `deepspeed` / `fsdp` and MindSpeed `fsdp_size` name the same engines as `dist_config`."""
    train = cfg.train
    implied: list[tuple[str, dict[str, Any]]] = []
    if train.deepspeed:
        implied.append(("deepspeed", _deepspeed_spec(train.deepspeed)))
    if _fsdp_enabled(train.fsdp):
        implied.append(("fsdp", hf_fsdp_spec(train.fsdp, train.fsdp_config)))
    if cfg.parallel.fsdp_size > 1:
        implied.append(("fsdp_size", {"name": "fsdp2"}))
    names = {spec["name"] for _, spec in implied}
    if len(names) > 1:
        raise _both(cfg, implied[0][0], implied[-1][0], "they choose different distributed engines")
    if implied and train.dist_config is not None:
        given = (
            train.dist_config.name
            if isinstance(train.dist_config, PluginSpec)
            else train.dist_config.get("name")
        )
        if given != implied[0][1]["name"]:
            raise _both(cfg, implied[0][0], "dist_config", "they choose different distributed engines")
    if implied and train.dist_config is None:
        train.dist_config = implied[0][1]


def _deepspeed_spec(value: str | dict[str, Any]) -> dict[str, Any]:
    """A JSON file, an inline mapping, or a preset by name (ms-swift's `--deepspeed zero2`, zero3_offload ...)."""
    from tunesmith.config.deepspeed_presets import PRESETS, preset

    if isinstance(value, dict):
        return {"name": "deepspeed", "config": value}
    if value in PRESETS:
        return {"name": "deepspeed", "config": preset(value)}
    return {"name": "deepspeed", "config_file": value}


def _fsdp_enabled(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip() not in ("", "no", "false")
    return bool(value)


def check_parallel_sizes(cfg: TunesmithConfig, world_size: int) -> None:
    """Parallel sizes must tile the world, and global_batch_size must split evenly over data-parallel ranks."""
    dp = data_parallel_size(cfg, world_size)
    par = cfg.parallel
    if par.fsdp_size > 1 and dp % par.fsdp_size:
        raise ConfigError(
            f"{cfg.where('fsdp_size')}: {par.fsdp_size} does not divide the data-parallel size {dp}"
        )
    if par.ep_size > 1 and (world_size // par.tp_size) % par.ep_size:
        raise ConfigError(
            f"{cfg.where('ep_size')}: {par.ep_size} does not divide world size / tp_size = {world_size // par.tp_size}"
        )
    train = cfg.train
    per_step = dp * train.per_device_train_batch_size
    if train.global_batch_size is None:
        train.global_batch_size = per_step * train.gradient_accumulation_steps
        return
    if train.global_batch_size % per_step:
        raise ConfigError(
            f"{cfg.where('global_batch_size')}: {train.global_batch_size} is not divisible by data-parallel size "
            f"({dp}) x {cfg.where('per_device_train_batch_size')} ({train.per_device_train_batch_size}) = {per_step}"
        )
    accumulation = train.global_batch_size // per_step
    if cfg.is_set("gradient_accumulation_steps") and train.gradient_accumulation_steps != accumulation:
        raise ConfigError(
            f"{cfg.where('global_batch_size')} implies gradient_accumulation_steps={accumulation}, but "
            f"{cfg.where('gradient_accumulation_steps')} is {train.gradient_accumulation_steps}"
        )
    train.gradient_accumulation_steps = accumulation


def data_parallel_size(cfg: TunesmithConfig, world_size: int) -> int:
    """world_size / (tp_size x cp_size); a ConfigError when they do not tile the world."""
    par = cfg.parallel
    model_parallel = par.tp_size * par.cp_size
    if world_size % model_parallel:
        raise ConfigError(
            f"{cfg.where('tp_size')} ({par.tp_size}) x {cfg.where('cp_size')} ({par.cp_size}) = {model_parallel} "
            f"does not divide the world size {world_size}"
        )
    return world_size // model_parallel


RULES: list[Callable[[TunesmithConfig], None]] = [
    _required,
    apply_parallelism_config,
    _precision,
    _streaming,
    _compile,
    _eval_split,
    _masking,
    _packing,
    _eval_strategy,
    _best_model,
    _loader_workers,
    _fsdp_modules,
    _interleave,
    _split,
    _plugins,
    check_unsupported,
    check_method_options,
    check_profiling,
    check_values,
]
