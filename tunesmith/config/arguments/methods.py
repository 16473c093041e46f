"""MethodArguments: Training methods beyond plain full/freeze/LoRA: adapter variants, memory-saving optimizers, extra losses, selective training."""

from __future__ import annotations

from dataclasses import dataclass



@dataclass
class MethodArguments:
    """Training methods beyond plain full/freeze/LoRA: adapter variants, memory-saving optimizers, extra losses, selective training."""
