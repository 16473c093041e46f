"""The frozen reference model of the preference stages.

- `ref_model` set: that model (with `ref_model_adapters` merged in, quantised by `ref_model_quantization_bit`).
- LoRA / QLoRA training without `ref_model`: no second copy; the reference is the policy with its adapters
  disabled (`adapters_disabled`).
- Full / freeze training without `ref_model`: a frozen copy of the starting weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

from torch import nn

from tunesmith.model.loader import load_model
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
ADAPTER_TYPES = ("lora", "qlora")


def uses_adapter_reference(cfg: Any) -> bool:
    """True when the reference is the policy with its adapters disabled (LoRA without ref_model)."""
    return cfg.preference.ref_model is None and cfg.model.finetuning_type in ADAPTER_TYPES


def build_reference(cfg: Any, model: nn.Module, tokenizer: Any) -> nn.Module | None:
    """The reference module for the starting `model` (call before adapters are added), or None when the policy
    with adapters disabled serves (see `uses_adapter_reference`)."""
    pref = cfg.preference
    if pref.ref_model is not None:
        return freeze(_load_ref_model(cfg, tokenizer))
    for name in ("ref_model_adapters", "ref_model_quantization_bit"):
        if getattr(pref, name) is not None:
            raise ConfigError(f"{cfg.where(name)}: only used with ref_model; set ref_model or unset {name}")
    if uses_adapter_reference(cfg):
        return None
    if any(p.is_meta for p in model.parameters()):
        raise ConfigError(
            "init_model_with_meta_device: the reference model is a copy of the starting weights, which this rank "
            "does not hold; set ref_model, or turn init_model_with_meta_device off"
        )
    return freeze(copy.deepcopy(model))


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients."""
    module.eval()
    module.requires_grad_(False)
    return module


def _load_ref_model(cfg: Any, tokenizer: Any) -> nn.Module:
    pref = cfg.preference
    ref_cfg = copy.copy(cfg)
    ref_cfg.model = dataclasses.replace(
        cfg.model,
        model_name_or_path=pref.ref_model,
        quantization_bit=pref.ref_model_quantization_bit,
        finetuning_type="full",
    )
    model = load_model(ref_cfg, tokenizer)
    adapters = [a.strip() for a in (pref.ref_model_adapters or "").split(",") if a.strip()]
    if adapters:
        from peft import PeftModel

        for path in adapters:
            model = PeftModel.from_pretrained(model, path)
            if not pref.ref_model_quantization_bit:
                model = model.merge_and_unload()
    logger.info("reference model: %s%s", pref.ref_model, f" + adapters {adapters}" if adapters else "")
    return model


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the (possibly wrapped) PEFT `model` as its base model inside the block."""
    inner = model
    while not hasattr(inner, "disable_adapter") and hasattr(inner, "module"):
        inner = inner.module
    if not hasattr(inner, "disable_adapter"):
        raise TypeError(f"{type(model).__name__} has no adapters to disable")
    with inner.disable_adapter():
        yield


def place_like(reference: nn.Module | None, model: nn.Module) -> nn.Module | None:
    """Move the reference onto the accelerator the policy's parameters are on (quantised references stay)."""
    device = next(model.parameters()).device
    if reference is None or getattr(reference, "is_quantized", False) or device.type in ("cpu", "meta"):
        return reference
    return reference.to(device)
