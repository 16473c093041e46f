"""Optimizers chosen by `optim` (transformers' names) or an `optim_config` plugin.

Weight decay applies to every trainable parameter except biases and normalisation weights, as transformers does.
Each parameter group carries `names` (the parameter names) so plugins can route parameters by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import yaml

from tunesmith.config.plugins import OPTIM
from tunesmith.utils.errors import ConfigError

NO_DECAY = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)", re.IGNORECASE)
NORM_TYPES = (torch.nn.LayerNorm, torch.nn.RMSNorm)


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters excluded from weight decay: biases and the weights of normalisation layers."""
    names = set()
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES) or "norm" in type(module).__name__.lower()
        for p_name, _ in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or NO_DECAY.search(full):
                names.add(full)
    return names


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into a decayed and a non-decayed group (empty groups dropped)."""
    skip = no_decay_names(model)
    groups = [
        {"params": [], "names": [], "weight_decay": weight_decay},
        {"params": [], "names": [], "weight_decay": 0.0},
    ]
    for name, param in model.named_parameters():
        if param.requires_grad:
            group = groups[name in skip]
            group["params"].append(param)
            group["names"].append(name)
    return [g for g in groups if g["params"]]


def parse_optim_args(value: str | dict | None) -> dict[str, Any]:
    """`optim_args` as a dict: a mapping, or the string form "key=value,key=value" (values parsed as YAML)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    parsed = {}
    for item in str(value).split(","):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"optim_args: expected 'key=value,key=value', got {item!r} in {value!r}")
        parsed[key.strip()] = yaml.safe_load(raw.strip())
    return parsed


def _bnb(name: str) -> Callable[..., torch.optim.Optimizer]:
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise ConfigError(
            f"optim: this optimizer needs bitsandbytes (pip install bitsandbytes): {exc}"
        ) from exc
    return getattr(bnb.optim, name)


def _adam(train: Any) -> dict[str, Any]:
    return {"betas": (train.adam_beta1, train.adam_beta2), "eps": train.adam_epsilon}


def _betas(train: Any) -> dict[str, Any]:
    return {"betas": (train.adam_beta1, train.adam_beta2)}


def _ademamix(train: Any) -> dict[str, Any]:
    """transformers' AdEMAMix defaults: a third beta of 0.9999 and alpha 5 (optim_args may change them)."""
    return {"betas": (train.adam_beta1, train.adam_beta2, 0.9999), "alpha": 5.0, "eps": train.adam_epsilon}


def _adafactor() -> Callable[..., torch.optim.Optimizer]:
    from transformers.optimization import Adafactor

    return Adafactor


# optim name -> (optimizer class factory, default kwargs from the training arguments)
OPTIMIZERS: dict[str, tuple[Callable[[], Callable], Callable[[Any], dict[str, Any]]]] = {
    "adamw_torch": (lambda: torch.optim.AdamW, _adam),
    "adamw_torch_fused": (lambda: torch.optim.AdamW, lambda t: {**_adam(t), "fused": True}),
    "adamw_8bit": (lambda: _bnb("AdamW8bit"), _adam),
    "adamw_bnb_8bit": (lambda: _bnb("AdamW8bit"), _adam),
    "paged_adamw_8bit": (lambda: _bnb("PagedAdamW8bit"), _adam),
    "paged_adamw_32bit": (lambda: _bnb("PagedAdamW"), _adam),
    "lion": (lambda: _bnb("Lion"), lambda t: {"betas": (t.adam_beta1, t.adam_beta2)}),
    "lion_32bit": (lambda: _bnb("Lion"), lambda t: {"betas": (t.adam_beta1, t.adam_beta2)}),
    "lion_8bit": (lambda: _bnb("Lion8bit"), lambda t: {"betas": (t.adam_beta1, t.adam_beta2)}),
    "paged_lion_32bit": (lambda: _bnb("Lion"), lambda t: {**_betas(t), "optim_bits": 32, "is_paged": True}),
    "paged_lion_8bit": (lambda: _bnb("Lion"), lambda t: {**_betas(t), "optim_bits": 8, "is_paged": True}),
    "rmsprop_bnb": (lambda: _bnb("RMSprop"), lambda t: {"optim_bits": 32}),
    "rmsprop_bnb_8bit": (lambda: _bnb("RMSprop"), lambda t: {"optim_bits": 8}),
    "rmsprop_bnb_32bit": (lambda: _bnb("RMSprop"), lambda t: {"optim_bits": 32}),
    "ademamix": (lambda: _bnb("AdEMAMix"), lambda t: {**_ademamix(t), "optim_bits": 32}),
    "ademamix_8bit": (lambda: _bnb("AdEMAMix"), lambda t: {**_ademamix(t), "optim_bits": 8}),
    "adafactor": (_adafactor, lambda t: {"scale_parameter": False, "relative_step": False}),
    "sgd": (lambda: torch.optim.SGD, lambda t: {}),
    "adagrad": (lambda: torch.optim.Adagrad, lambda t: {}),
    "rmsprop": (lambda: torch.optim.RMSprop, lambda t: {}),
}


def build_optimizer(model: torch.nn.Module, train: Any, methods: Any = None) -> torch.optim.Optimizer:
    """The optimizer for `model`'s trainable parameters as `train` (the training arguments) and `methods` (the
    method arguments: LoRA+, GaLore, APOLLO, BAdam, Adam-mini; optim_methods.py) ask."""
    from tunesmith.train.optim_methods import method_optimizer  # it builds on this module's tables

    chosen = method_optimizer(model, train, methods)
    if chosen is not None:
        return chosen
    groups = param_groups(model, train.weight_decay)
    if not groups:
        raise ConfigError("the model has no trainable parameters; check finetuning_type and its options")
    spec = getattr(train, "optim_config", None)
    if spec is not None:
        return OPTIM.get(spec.name).factory(groups, train.learning_rate, spec.params)
    if getattr(train, "optim_target_modules", None):
        raise ConfigError(
            f"optim_target_modules: optimizer {train.optim!r} does not use it (GaLore/APOLLO only)"
        )
    if train.optim not in OPTIMIZERS:
        raise ConfigError(
            f"optim: {train.optim!r} is not supported here; choose one of {', '.join(OPTIMIZERS)}"
        )
    cls_factory, defaults = OPTIMIZERS[train.optim]
    kwargs = {**defaults(train), **parse_optim_args(getattr(train, "optim_args", None))}
    try:
        return cls_factory()(groups, lr=train.learning_rate, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"optim_args: {exc} (optimizer {train.optim})") from exc
