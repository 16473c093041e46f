"""Optimizers the methods arguments choose: LoRA+ param groups, GaLore and APOLLO (low-rank optimizer states),
BAdam (block-wise updates) and Adam-mini, each from its released package (the `methods` extra), as LLaMA-Factory
builds them; plus transformers' `optim: galore_* / apollo_*` names with `optim_target_modules`.

GaLore's and APOLLO's layer-wise variants (`*_layerwise`, galore_layerwise / apollo_layerwise) give each parameter
its own optimizer, stepped inside backward (layerwise.py).
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

import torch

from tunesmith.train.checkpoint import TRAINABLE_SET_CHANGES
from tunesmith.train.layerwise import layerwise
from tunesmith.train.loss import unwrap
from tunesmith.train.low_rank_state import checkpointable_projectors
from tunesmith.train.optimizers import OPTIMIZERS, no_decay_names, param_groups, parse_optim_args
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

# transformers' optim names -> (package, class); their optim_args defaults are transformers' own
HF_LOW_RANK = {
    "galore_adamw": ("galore_torch", "GaLoreAdamW"),
    "galore_adamw_8bit": ("galore_torch", "GaLoreAdamW8bit"),
    "galore_adafactor": ("galore_torch", "GaLoreAdafactor"),
    "apollo_adamw": ("apollo_torch", "APOLLOAdamW"),
}
LAYERWISE = "_layerwise"
HF_LOW_RANK.update({name + LAYERWISE: found for name, found in HF_LOW_RANK.items()})
HF_DEFAULTS = {
    "galore_torch": {"rank": 128, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"},
    "apollo_torch": {
        "rank": 128,
        "proj": "random",
        "scale_type": "channel",
        "update_proj_gap": 200,
        "scale": 1.0,
        "proj_type": "std",
    },
}
# LLaMA-Factory's base optimizer -> GaLore class
GALORE_FOR = {
    "adamw_torch": "GaLoreAdamW",
    "adamw_8bit": "GaLoreAdamW8bit",
    "adamw_bnb_8bit": "GaLoreAdamW8bit",
    "paged_adamw_8bit": "GaLoreAdamW8bit",
    "adafactor": "GaLoreAdafactor",
}
PACKAGES = {
    "galore_torch": "galore-torch",
    "apollo_torch": "apollo-torch",
    "badam": "badam",
    "adam_mini": "adam-mini",
}


def method_optimizer(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer | None:
    """The optimizer a method asks for (use_galore, use_apollo, loraplus_lr_ratio, use_badam, use_adam_mini,
    or optim galore_*/apollo_*), or None for the plain `optim`."""
    if train.optim in HF_LOW_RANK:
        return _hf_low_rank(model, train)
    if methods is None:
        return None
    chosen = [
        name
        for name, on in (
            ("use_galore", methods.use_galore),
            ("use_apollo", methods.use_apollo),
            ("loraplus_lr_ratio", methods.loraplus_lr_ratio is not None),
            ("use_badam", methods.use_badam),
            ("use_adam_mini", methods.use_adam_mini),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ConfigError(f"{chosen[0]} and {chosen[1]}: each picks the optimizer; choose one")
    if not chosen:
        return None
    if getattr(train, "optim_config", None) is not None:
        raise ConfigError(f"optim_config and {chosen[0]}: each picks the optimizer; choose one")
    build = {
        "use_galore": _galore,
        "use_apollo": _apollo,
        "loraplus_lr_ratio": _loraplus,
        "use_badam": _badam,
        "use_adam_mini": _adam_mini,
    }[chosen[0]]
    return build(model, train, methods)


def _package(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"this optimizer needs {PACKAGES[module]} (pip install 'tunesmith[methods]'): {exc}"
        ) from exc


def _base_class(train: Any, field: str) -> tuple[Any, dict[str, Any]]:
    """The `optim` optimizer class and its keyword arguments (optim_args included)."""
    if train.optim not in OPTIMIZERS:
        raise ConfigError(f"optim: {train.optim!r} cannot be combined with {field}")
    cls_factory, defaults = OPTIMIZERS[train.optim]
    return cls_factory(), {**defaults(train), **parse_optim_args(getattr(train, "optim_args", None))}


def _make(
    cls: Any, groups: list[dict[str, Any]], kwargs: dict[str, Any], field: str
) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters; check finetuning_type and its options")
    try:
        return cls(groups, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{field}: {exc} (optimizer {cls.__name__})") from exc


# --- LoRA+ --------------------------------------------------------------------------------------------------------
def loraplus_groups(
    model: torch.nn.Module, lr: float, weight_decay: float, methods: Any
) -> list[dict[str, Any]]:
    """LoRA+ groups: A matrices (and other trainables) at `lr`, B matrices (and 1-D trainables) at
    `lr x loraplus_lr_ratio` (decayed and not), embedding B matrices at `loraplus_lr_embedding`."""
    skip = no_decay_names(model)
    plus = lr * methods.loraplus_lr_ratio
    groups = {
        "lora_a": {"params": [], "names": [], "lr": lr, "weight_decay": weight_decay},
        "lora_b": {"params": [], "names": [], "lr": plus, "weight_decay": weight_decay},
        "lora_b_nodecay": {"params": [], "names": [], "lr": plus, "weight_decay": 0.0},
        "embedding": {
            "params": [],
            "names": [],
            "lr": methods.loraplus_lr_embedding,
            "weight_decay": weight_decay,
        },
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "lora_embedding_B" in name:
            key = "embedding"
        elif "lora_B" in name or param.ndim == 1:
            key = "lora_b_nodecay" if name in skip else "lora_b"
        else:
            key = "lora_a"
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    if not groups["lora_b"]["params"]:
        raise ConfigError(
            "loraplus_lr_ratio: the model has no trainable LoRA B matrices; use finetuning_type: lora"
        )
    return list(groups.values())


def _loraplus(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer:
    cls, kwargs = _base_class(train, "loraplus_lr_ratio")
    groups = loraplus_groups(model, train.learning_rate, train.weight_decay, methods)
    logger.info("LoRA+: B matrices at learning rate x %s", methods.loraplus_lr_ratio)
    return _make(cls, groups, {"lr": train.learning_rate, **kwargs}, "loraplus_lr_ratio")


# --- GaLore / APOLLO ----------------------------------------------------------------------------------------------
def low_rank_targets(model: torch.nn.Module, target: str | list[str] | None, field: str) -> set[int]:
    """ids of the trainable 2-D weights of the linear modules `target` names: all (every linear layer but the
    output head), module-name substrings (LLaMA-Factory), or transformers' regexes / all-linear."""
    names = target.split(",") if isinstance(target, str) else list(target or ["all"])
    names = [n.strip() for n in names if n.strip()]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    everything = names in (["all"], ["all-linear"])
    found: set[int] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        if everything or any(n in mod_name or re.fullmatch(n, mod_name) for n in names):
            found.update(id(p) for p in module.parameters() if p.requires_grad and p.ndim > 1)
    if not found:
        raise ConfigError(f"{field}: {names} matches no trainable linear layer of the model")
    return found


def _split_low_rank(
    model: torch.nn.Module, targets: set[int], weight_decay: float, extra: dict[str, Any]
) -> list[dict[str, Any]]:
    """The plain decay/no-decay groups without the targets, then one group of the targets with `extra`."""
    groups = param_groups(model, weight_decay)
    for group in groups:
        kept = [(n, p) for n, p in zip(group["names"], group["params"], strict=True) if id(p) not in targets]
        group["names"], group["params"] = [n for n, _ in kept], [p for _, p in kept]
    chosen = [(n, p) for n, p in model.named_parameters() if id(p) in targets]
    low = {"params": [p for _, p in chosen], "names": [n for n, _ in chosen], "weight_decay": weight_decay}
    return [*groups, {**low, **extra}]


def _galore(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer:
    if train.optim not in GALORE_FOR:
        raise ConfigError(
            f"use_galore: optim {train.optim!r} has no GaLore form; use one of {', '.join(GALORE_FOR)}"
        )
    cls = getattr(_package("galore_torch"), GALORE_FOR[train.optim])
    extra = {
        "rank": methods.galore_rank,
        "update_proj_gap": methods.galore_update_interval,
        "scale": methods.galore_scale,
        "proj_type": methods.galore_proj_type,
    }
    groups = _split_low_rank(
        model, low_rank_targets(model, methods.galore_target, "galore_target"), train.weight_decay, extra
    )
    _, kwargs = _base_class(train, "use_galore")
    kwargs.pop("fused", None)
    logger.info("GaLore %s: %s", cls.__name__, extra)
    return _low_rank(
        cls, groups, {"lr": train.learning_rate, **kwargs}, "use_galore", train, methods.galore_layerwise
    )


def _apollo(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer:
    if train.optim != "adamw_torch":
        raise ConfigError(
            f"use_apollo: APOLLO is an AdamW variant; set optim: adamw_torch (now {train.optim!r})"
        )
    cls = _package("apollo_torch").APOLLOAdamW
    extra = {
        "rank": methods.apollo_rank,
        "proj": methods.apollo_proj,
        "proj_type": methods.apollo_proj_type,
        "update_proj_gap": methods.apollo_update_interval,
        "scale": methods.apollo_scale,
        "scale_type": methods.apollo_scale_type,
        "scale_front": methods.apollo_scale_front,
    }
    groups = _split_low_rank(
        model, low_rank_targets(model, methods.apollo_target, "apollo_target"), train.weight_decay, extra
    )
    _, kwargs = _base_class(train, "use_apollo")
    logger.info("APOLLO: %s", extra)
    return _low_rank(
        cls, groups, {"lr": train.learning_rate, **kwargs}, "use_apollo", train, methods.apollo_layerwise
    )


def _hf_low_rank(model: torch.nn.Module, train: Any) -> torch.optim.Optimizer:
    """transformers' `optim: galore_adamw|galore_adamw_8bit|galore_adafactor|apollo_adamw` with
    `optim_target_modules` and the projection options in `optim_args`, built as transformers builds it: the
    class's own eps/betas and no weight decay (APOLLO: adam_beta1/2 and adam_epsilon on the projected group);
    other optim_args keys go to the class (transformers drops them)."""
    module, cls_name = HF_LOW_RANK[train.optim]
    if not train.optim_target_modules:
        raise ConfigError(
            f"optim: {train.optim} needs optim_target_modules (e.g. all-linear, or [attn, mlp])"
        )
    cls = getattr(_package(module), cls_name)
    options = parse_optim_args(getattr(train, "optim_args", None))
    extra = {**HF_DEFAULTS[module], **{k: v for k, v in options.items() if k in HF_DEFAULTS[module]}}
    kwargs = {k: v for k, v in options.items() if k not in HF_DEFAULTS[module]}
    if module == "apollo_torch":  # as transformers: Adam's betas/eps for the projected group only
        extra.update(betas=(train.adam_beta1, train.adam_beta2), eps=train.adam_epsilon)
    if "adafactor" in train.optim:
        kwargs = {"scale_parameter": False, "relative_step": False, **kwargs}
    targets = low_rank_targets(model, train.optim_target_modules, "optim_target_modules")
    # transformers replaces the weight-decay groups by its low-rank ones: no weight decay, the class's defaults
    groups = _split_low_rank(model, targets, 0.0, extra)
    kwargs = {"lr": train.learning_rate, **kwargs}
    return _low_rank(cls, groups, kwargs, "optim_args", train, train.optim.endswith(LAYERWISE))


def _low_rank(
    cls: Any, groups: list[dict[str, Any]], kwargs: dict[str, Any], field: str, train: Any, per_layer: bool
) -> torch.optim.Optimizer:
    """The GaLore/APOLLO optimizer over `groups` (checkpointable projectors); `per_layer`: one per parameter,
    stepped inside backward."""
    if not per_layer:
        return checkpointable_projectors(_make(cls, groups, kwargs, field))
    if train.gradient_accumulation_steps != 1:
        raise ConfigError(
            "gradient_accumulation_steps: layer-wise GaLore/APOLLO updates each parameter inside backward, so a "
            "step is one backward; set it to 1 (or use the non-layer-wise optimizer)"
        )
    logger.info(
        "layer-wise %s: each parameter is updated inside backward (no gradient clipping)", cls.__name__
    )
    return layerwise(
        [g for g in groups if g["params"]], lambda g: checkpointable_projectors(_make(cls, g, kwargs, field))
    )


# --- BAdam / Adam-mini --------------------------------------------------------------------------------------------
def _badam(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer:
    if methods.badam_mode == "ratio":
        raise ConfigError(
            "badam_mode: ratio updates through sparse gradients, which the step's gradient-norm computation "
            "cannot take; use badam_mode: layer"
        )
    badam = _package("badam")
    cls, kwargs = _base_class(train, "use_badam")
    kwargs.pop("fused", None)
    groups = [g for g in param_groups(model, train.weight_decay) if g["params"]]
    for group in groups:
        group.pop("names")
    setattr(unwrap(model), TRAINABLE_SET_CHANGES, True)
    logger.info(
        "BAdam: one block of layers at a time, switched every %d steps", methods.badam_switch_interval
    )
    return badam.BlockOptimizer(
        base_optimizer=cls(groups, lr=train.learning_rate, **kwargs),
        named_parameters_list=list(model.named_parameters()),
        block_prefix_list=None,
        switch_block_every=methods.badam_switch_interval,
        start_block=methods.badam_start_block,
        switch_mode=methods.badam_switch_mode,
        verbose=methods.badam_verbose,
    )


def _adam_mini(model: torch.nn.Module, train: Any, methods: Any) -> torch.optim.Optimizer:
    config = getattr(model, "config", None)
    config = getattr(model.get_base_model(), "config", config) if hasattr(model, "get_base_model") else config
    return _package("adam_mini").Adam_mini(
        named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        eps=train.adam_epsilon,
        weight_decay=train.weight_decay,
        model_sharding=False,
        dim=getattr(config, "hidden_size", 2048),
        n_heads=getattr(config, "num_attention_heads", 32),
        n_kv_heads=getattr(config, "num_key_value_heads", None),
        verbose=False,
    )
