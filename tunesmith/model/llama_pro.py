"""LLaMA-Pro block expansion (Wu et al. 2024, ms-swift's llamapro): copies of decoder blocks inserted after each
group of layers, their output projections zeroed so each new block starts as the identity; only they train.
The expanded model is an ordinary model with more layers: it saves and reloads in transformers."""

from __future__ import annotations

import copy
import logging

import torch
from transformers import PreTrainedModel

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
# the projections that write into the residual stream: zero them and the block adds nothing
OUTPUT_PROJECTIONS = ("o_proj", "down_proj")


def expand_blocks(model: PreTrainedModel, num_new_blocks: int, num_groups: int | None) -> list[int]:
    """Insert `num_new_blocks` identity blocks, spread over `num_groups` groups of layers (default: one group
    per new block), and leave only them trainable. Returns the indices of the new blocks."""
    groups = num_groups or num_new_blocks
    layers = model.get_decoder().layers
    total = len(layers)
    if total % groups or num_new_blocks % groups:
        raise ConfigError(
            f"llamapro_num_groups: {groups} groups must divide the {total} layers and the {num_new_blocks} new "
            "blocks (llamapro_num_new_blocks)"
        )
    stride, per_group = total // groups, num_new_blocks // groups
    types = getattr(model.config, "layer_types", None)
    new_layers, new_types, new_ids = [], [], []
    for idx, layer in enumerate(layers):
        new_layers.append(layer)
        new_types.append(types[idx] if types else None)
        if (idx + 1) % stride == 0:
            for _ in range(per_group):
                new_ids.append(len(new_layers))
                new_layers.append(_identity_copy(layer))
                new_types.append(types[idx] if types else None)
    for idx, layer in enumerate(new_layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = idx
    model.get_decoder().layers = torch.nn.ModuleList(new_layers)
    model.config.num_hidden_layers = len(new_layers)
    if types:
        model.config.layer_types = new_types
    for name, param in model.named_parameters():
        param.requires_grad_(_layer_index(name) in new_ids)
    logger.info("LLaMA-Pro: %d layers -> %d; training the new blocks %s", total, len(new_layers), new_ids)
    return new_ids


def _identity_copy(layer: torch.nn.Module) -> torch.nn.Module:
    block = copy.deepcopy(layer)
    zeroed = 0
    for name, module in block.named_modules():
        if name.rsplit(".", 1)[-1] in OUTPUT_PROJECTIONS and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
            zeroed += 1
    if zeroed != len(OUTPUT_PROJECTIONS):
        raise ConfigError(
            f"llamapro_num_new_blocks: the decoder block {type(layer).__name__} has no o_proj/down_proj linear "
            "pair to zero (MoE and other block types are not supported)"
        )
    return block


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None
