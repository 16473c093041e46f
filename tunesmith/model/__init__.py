"""Model layer: tokenizer and model loading, vocabulary growth, fine-tuning types, training preparation, saving."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel

from tunesmith.model.adapters import apply_finetuning, count_parameters, report_parameters
from tunesmith.model.checkpointing import enable_checkpointing
from tunesmith.model.loader import load_model
from tunesmith.model.model_switches import param_status
from tunesmith.model.neftune import attach_neftune
from tunesmith.model.saving import save_merged, save_pretrained_output
from tunesmith.model.selective import apply_selective
from tunesmith.model.tokenizer import load_tokenizer

if TYPE_CHECKING:  # peft is imported only when an adapter is used (it takes seconds to import)
    from peft import PeftModel

logger = logging.getLogger("tunesmith")

__all__ = [
    "count_parameters",
    "load_model",
    "load_tokenizer",
    "prepare_for_training",
    "report_parameters",
    "save_merged",
    "save_pretrained_output",
]


def prepare_for_training(model: PreTrainedModel, cfg: Any) -> PreTrainedModel | PeftModel:
    """Apply the fine-tuning type (full / freeze / lora / qlora) and the selective methods (LLaMA-Pro expansion,
    freeze_parameters*/trainable_parameters*: model/selective.py), activation checkpointing
    (`gradient_checkpointing`, `gradient_checkpointing_kwargs`, `recompute_modules`) and NEFTune
    (`neftune_noise_alpha`); log the trainable / total parameter counts. Returns the model to train."""
    train = cfg.train
    model = apply_finetuning(model, cfg.model, int(train.seed), cfg.methods)
    apply_selective(model, cfg.model.finetuning_type, cfg.methods)
    if checkpointing_wanted(cfg):
        enable_checkpointing(model, cfg.parallel.recompute_modules, checkpointing_kwargs(cfg))
    if train.neftune_noise_alpha:
        attach_neftune(model, train.neftune_noise_alpha)
    report_parameters(model)
    if cfg.methods.print_param_status:
        logger.info("parameters:\n%s", param_status(model))
    return model


def checkpointing_kwargs(cfg: Any) -> dict[str, Any] | None:
    """gradient_checkpointing_kwargs, with use_reentrant from use_reentrant_gc when that is set or on (a
    dialect's home default, e.g. LLaMA-Factory's) and the kwargs do not name it."""
    kwargs = dict(cfg.train.gradient_checkpointing_kwargs or {})
    on = cfg.methods.use_reentrant_gc and "use_reentrant" not in kwargs
    if cfg.is_set("use_reentrant_gc") or on:
        kwargs["use_reentrant"] = cfg.methods.use_reentrant_gc
    return kwargs or None


def checkpointing_wanted(cfg: Any) -> bool:
    """gradient_checkpointing, unless disable_gradient_checkpointing (LLaMA-Factory's switch) turns it off."""
    if cfg.methods.disable_gradient_checkpointing and cfg.train.gradient_checkpointing:
        logger.info("disable_gradient_checkpointing: activation checkpointing stays off")
        return False
    return bool(cfg.train.gradient_checkpointing)
