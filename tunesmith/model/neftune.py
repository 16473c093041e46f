"""NEFTune: uniform noise on the input embeddings during training (alpha / sqrt(seq_len * hidden_size))."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tunesmith.utils.errors import ConfigError


def attach_neftune(model: nn.Module, alpha: float) -> RemovableHandle:
    """Add NEFTune noise to the input-embedding output in training mode; returns the hook handle."""
    if alpha <= 0:
        raise ConfigError(f"neftune_noise_alpha: {alpha} must be > 0")
    embeddings = model.get_input_embeddings()

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        magnitude = alpha / math.sqrt(output.shape[1] * output.shape[2])
        return output + torch.zeros_like(output).uniform_(-magnitude, magnitude)

    return embeddings.register_forward_hook(hook)
