"""Fine-tuning types: which weights train. full (all), freeze (LLaMA-Factory's last/first N layers, optionally only
some of their modules), lora and qlora (peft LoRA; qlora on a 4-bit base); trainable/total parameter report."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from tunesmith.config.arguments import MethodArguments
from tunesmith.model.adapter_load import adapter_paths, attach_adapters
from tunesmith.model.adapter_variants import ADAPTER_TYPES
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:  # peft is imported only when an adapter is used (it takes seconds to import)
    from peft import PeftModel

logger = logging.getLogger("tunesmith")

LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.([^.]+)")


def apply_finetuning(
    model: PreTrainedModel, margs: Any, seed: int, methods: Any = None
) -> PreTrainedModel | PeftModel:
    """Set `requires_grad` (full, freeze) or wrap the model with LoRA adapters (lora, qlora) whose random
    initial weights are drawn with `seed`. `methods` (cfg.methods) adds freeze tuning's extra modules and
    LLaMA-Pro's evenly spread layers. Saved adapters (`adapter_name_or_path`) are merged in order, the last one
    trained on, or all merged and a new adapter created (`create_new_adapter`)."""
    kind = margs.finetuning_type
    methods = methods if methods is not None else MethodArguments()
    quantized = getattr(model, "is_quantized", False)
    if kind == "qlora" and not quantized:
        raise ConfigError("finetuning_type: qlora needs a 4-bit base; load the model through load_model")
    _check_method_scope(kind, methods)
    adapters = adapter_paths(margs.adapter_name_or_path)
    if adapters and kind not in ("lora", "qlora"):
        raise ConfigError(f"adapter_name_or_path: continues LoRA training; finetuning_type is {kind}")
    if kind in ADAPTER_TYPES:
        if kind not in ("lora", "qlora", "oft") and quantized:  # peft's OFT wraps 4/8-bit layers (QOFT)
            raise ConfigError(
                f"finetuning_type: {kind} on a quantised base is not supported; use lora, qlora or oft"
            )
        if adapters and not methods.create_new_adapter:
            return attach_adapters(model, adapters, trainable=True)  # all merged but the last, which trains
        if adapters:
            model = attach_adapters(model, adapters, merge_all=True)
            model.name_or_path = (
                ""  # merged weights exist in no checkpoint: the new adapter's output saves them
            )
        return _apply_lora(model, margs, quantized, seed, methods)
    if kind == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if kind == "freeze":
        _apply_freeze(
            model,
            margs.freeze_trainable_layers,
            margs.freeze_trainable_modules,
            methods.freeze_extra_modules,
            methods.use_llama_pro,
        )
        return model
    raise ConfigError(
        f"finetuning_type: {kind!r} is not allowed; choose one of: full, freeze, {', '.join(ADAPTER_TYPES)}"
    )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a 4-bit packed weight counts its unpacked elements."""
    trainable = total = 0
    for param in model.parameters():
        count = param.numel() * (2 if type(param).__name__ == "Params4bit" else 1)
        total += count
        trainable += count if param.requires_grad else 0
    return trainable, total


def report_parameters(model: torch.nn.Module) -> str:
    """Log and return the one-line trainable/total parameter report."""
    trainable, total = count_parameters(model)
    line = f"trainable params: {trainable:,} || all params: {total:,} || trainable: {100 * trainable / total:.4f}%"
    logger.info(line)
    return line


def is_adapter_model(model: Any) -> bool:
    """Whether `model` is a peft model (False without importing peft when nothing imported it yet)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def _apply_lora(model: PreTrainedModel, margs: Any, quantized: bool, seed: int, methods: Any) -> PeftModel:
    """The adapter of `finetuning_type` (LoRA and its variants: model/adapter_variants.py) on `model`."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from tunesmith.model.adapter_variants import cast_adapter, init_lora_weights, peft_config

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    target = margs.target_modules
    whole = isinstance(target, str) and target in ("all-linear", "all")
    target = "all-linear" if whole else _names(target, "target_modules")
    if methods.use_llama_pro:
        target = _expanded_targets(model, target, margs.freeze_trainable_layers)
    if quantized and init_lora_weights(methods) not in (True, False, "gaussian"):
        raise ConfigError(
            "pissa_init / init_lora_weights: SVD-based initialisation needs a full-precision base"
        )
    config = peft_config(margs.finetuning_type, margs, methods, target, _modules_to_save(model, margs))
    if not hasattr(model, "prepare_inputs_for_generation"):
        config.task_type = (
            None  # a reward model (sequence classifier): peft's plain model, no generation hooks
        )
    if hasattr(config, "ensure_weight_tying"):
        config.ensure_weight_tying = bool(getattr(model.config, "tie_word_embeddings", False))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            peft_model = get_peft_model(model, config)
    except ValueError as err:
        if "ParamWrapper" in str(err) and "lora_dropout" in str(err):
            raise ConfigError(
                f"lora_dropout: {margs.lora_dropout}: the targets include fused MoE expert weights (all-linear "
                "does on this model), which peft's LoRA trains only without dropout; set lora_dropout: 0, or name "
                "target_modules without the experts"
            ) from err
        raise ConfigError(f"target_modules: {err}".splitlines()[0]) from err
    cast_adapter(peft_model, methods.lora_dtype)
    return peft_model


def _modules_to_save(model: PreTrainedModel, margs: Any) -> list[str] | None:
    """The user's list; when the vocabulary grows and none is given, the embedding and LM head (as
    LLaMA-Factory does), so that the new tokens' rows train too."""
    if margs.modules_to_save:
        return _names(margs.modules_to_save, "modules_to_save")
    if not (
        margs.resize_vocab or margs.add_tokens or margs.add_special_tokens or margs.new_special_tokens_config
    ):
        return None
    wanted = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    names = sorted(
        {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if id(module) in wanted}
    )
    logger.info("new tokens with LoRA: training %s fully (modules_to_save) so their new rows learn", names)
    return names


def _apply_freeze(
    model: PreTrainedModel,
    num_layers: int,
    modules: str | list[str],
    extra: list[str] | None = None,
    llama_pro: bool = False,
) -> None:
    """Train the last `num_layers` decoder layers (the first -num_layers when negative; with `llama_pro` the last
    layer of each of `num_layers` equal groups); inside them only the direct sub-modules named in `modules`
    unless it is `all`; plus the modules outside the layers named in `extra` (e.g. embed_tokens, lm_head)."""
    total = model.config.num_hidden_layers
    if num_layers == 0 or abs(num_layers) > total:
        raise ConfigError(
            f"freeze_trainable_layers: {num_layers} must be non-zero and at most {total} in magnitude"
        )
    layer_ids = _freeze_layer_ids(total, num_layers, llama_pro)
    wanted = (
        None if modules == "all" or modules == ["all"] else set(_names(modules, "freeze_trainable_modules"))
    )
    extras = set(_names(extra, "freeze_extra_modules")) if extra else set()
    present: set[str] = set()
    outside: set[str] = set()
    for name, param in model.named_parameters():
        match = LAYER_RE.search(name)
        if match:
            present.add(match.group(2))
        else:
            outside.update(name.split(".")[:-1])
        train = (
            bool(match) and int(match.group(1)) in layer_ids and (wanted is None or match.group(2) in wanted)
        ) or (not match and bool(extras & set(name.split(".")[:-1])))
        param.requires_grad_(train)  # dtypes stay uniform: a mixed-dtype layer fails without autocast
    if extras - outside:
        raise ConfigError(
            f"freeze_extra_modules: {sorted(extras - outside)} not found outside the decoder layers; "
            f"available: {', '.join(sorted(outside))}"
        )
    if wanted and not wanted <= present:
        raise ConfigError(
            f"freeze_trainable_modules: {sorted(wanted - present)} not found in the decoder layers; "
            f"available: {', '.join(sorted(present))}, or all"
        )


def _check_method_scope(kind: str, methods: Any) -> None:
    """Options that act only with some fine-tuning types are errors with the others (never ignored)."""
    if methods.freeze_extra_modules and kind != "freeze":
        raise ConfigError(f"freeze_extra_modules: only used with finetuning_type: freeze (now {kind!r})")
    if methods.use_llama_pro and kind not in ("freeze", "lora", "qlora"):
        raise ConfigError(f"use_llama_pro: needs finetuning_type freeze or lora (now {kind!r})")


def _expanded_targets(model: PreTrainedModel, target: str | list[str], num_layers: int) -> list[str]:
    """LLaMA-Pro with LoRA: the target modules inside the evenly spread trainable layers only."""
    layer_ids = _freeze_layer_ids(model.config.num_hidden_layers, num_layers, llama_pro=True)
    wanted = None if target == "all-linear" else set(target)
    head = model.get_output_embeddings()
    names = []
    for name, module in model.named_modules():
        match = LAYER_RE.search(name)
        if not (isinstance(module, torch.nn.Linear) and match and int(match.group(1)) in layer_ids):
            continue
        if module is not head and (wanted is None or name.rsplit(".", 1)[-1] in wanted):
            names.append(name)
    if not names:
        raise ConfigError(
            f"use_llama_pro: target_modules {target} match nothing in layers {sorted(layer_ids)}"
        )
    return names


def _freeze_layer_ids(total: int, num_layers: int, llama_pro: bool) -> set[int]:
    if not llama_pro:
        return set(range(total - num_layers, total) if num_layers > 0 else range(-num_layers))
    if num_layers < 0 or total % num_layers:
        raise ConfigError(
            f"use_llama_pro: freeze_trainable_layers ({num_layers}) must be positive and divide the {total} layers"
        )
    stride = total // num_layers
    return set(range(stride - 1, total, stride))


def _names(value: str | list[str], field: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise ConfigError(f"{field}: no module names given")
    return names
