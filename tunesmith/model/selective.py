"""Selective training of ms-swift's full tuning: freeze parameters by prefix, regular expression or a share of all
elements from the bottom up, then make some trainable again by prefix or regular expression (trainable_* wins);
LLaMA-Pro expansion; the full-tuning-only check of these and LISA (train/lisa.py)."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from tunesmith.model.llama_pro import expand_blocks
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def wants_selection(methods: Any) -> bool:
    """Whether any freeze_parameters* / trainable_parameters* option is set."""
    return bool(
        methods.freeze_parameters
        or methods.freeze_parameters_regex
        or methods.freeze_parameters_ratio
        or methods.trainable_parameters
        or methods.trainable_parameters_regex
    )


def apply_selection(model: torch.nn.Module, methods: Any) -> None:
    """Freeze, then unfreeze, as swift orders them: ratio, prefixes, regex; then trainable prefixes and regex."""
    params = list(model.named_parameters())
    if methods.freeze_parameters_ratio:
        _freeze_bottom_share(params, methods.freeze_parameters_ratio)
    prefixes = _prefixes(methods.freeze_parameters)
    freeze_re = _regex(methods.freeze_parameters_regex, "freeze_parameters_regex")
    train_prefixes = _prefixes(methods.trainable_parameters)
    train_re = _regex(methods.trainable_parameters_regex, "trainable_parameters_regex")
    for field, found in (
        ("freeze_parameters", _count(params, prefixes, None)),
        ("freeze_parameters_regex", _count(params, (), freeze_re)),
        ("trainable_parameters", _count(params, train_prefixes, None)),
        ("trainable_parameters_regex", _count(params, (), train_re)),
    ):
        if found == 0:
            raise ConfigError(f"{field}: matches no parameter name (e.g. {params[0][0]})")
    for name, param in params:
        if name.startswith(prefixes) or (freeze_re is not None and freeze_re.search(name)):
            param.requires_grad_(False)
        if name.startswith(train_prefixes) or (train_re is not None and train_re.search(name)):
            param.requires_grad_(True)
    logger.info(
        "selective training: %d of %d tensors train", sum(p.requires_grad for _, p in params), len(params)
    )


def _freeze_bottom_share(params: list[tuple[str, torch.nn.Parameter]], ratio: float) -> None:
    """Freeze whole tensors from the first one on while their elements stay within `ratio` of all elements."""
    budget = int(sum(p.numel() for _, p in params) * ratio)
    used = 0
    for _, param in params:
        used += param.numel()
        if used > budget:
            break
        param.requires_grad_(False)


def _prefixes(value: list[str] | str | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return tuple(item.strip() for item in items if item.strip())


def _regex(value: str | None, field: str) -> re.Pattern | None:
    if not value:
        return None
    try:
        return re.compile(value)
    except re.error as err:
        raise ConfigError(f"{field}: {value!r} is not a valid regular expression ({err})") from err


def _count(
    params: list[tuple[str, Any]], prefixes: tuple[str, ...], pattern: re.Pattern | None
) -> int | None:
    """How many names the option matches; None when the option is not set."""
    if not prefixes and pattern is None:
        return None
    return sum(
        1 for n, _ in params if (prefixes and n.startswith(prefixes)) or (pattern and pattern.search(n))
    )


def apply_selective(model: torch.nn.Module, finetuning_type: str, methods: Any) -> None:
    """LLaMA-Pro expansion (llamapro_num_new_blocks) or the freeze/trainable selection, on full tuning only."""
    asked = [
        name
        for name, on in (
            ("llamapro_num_new_blocks", methods.llamapro_num_new_blocks),
            ("freeze_parameters*/trainable_parameters*", wants_selection(methods)),
            ("lisa_activated_layers", methods.lisa_activated_layers),
        )
        if on
    ]
    if asked and finetuning_type != "full":
        raise ConfigError(
            f"{asked[0]}: selects weights of full tuning; set finetuning_type: full (now {finetuning_type!r})"
        )
    if methods.llamapro_num_new_blocks:
        expand_blocks(model, methods.llamapro_num_new_blocks, methods.llamapro_num_groups)
    if wants_selection(methods):
        apply_selection(model, methods)
