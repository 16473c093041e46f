"""LISA (layerwise importance sampling, Pan et al. 2024; ms-swift's lisa_activated_layers): during full tuning only
`lisa_activated_layers` randomly drawn decoder layers train at a time, re-drawn every `lisa_step_interval` steps;
the embeddings, final norm and head always train.

The optimizer is built over every parameter before the first draw, so each layer keeps its own optimizer state
across draws (a frozen layer has no gradient and the optimizer skips it). The draw for step s depends only on the
seed and s // interval, so a resumed run draws the same layers.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint import TRAINABLE_SET_CHANGES
from tunesmith.train.loss import unwrap

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")


class Lisa(Callback):
    """Re-draws the trainable decoder layers every `interval` optimizer steps."""

    def __init__(self, layers: int, interval: int, seed: int) -> None:
        self.layers, self.interval, self.seed = layers, interval, seed
        self.active: list[int] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        setattr(unwrap(trainer.model), TRAINABLE_SET_CHANGES, True)
        self.draw(trainer.model, trainer.state.global_step)

    def on_step_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if trainer.state.global_step % self.interval == 0:
            self.draw(trainer.model, trainer.state.global_step)

    def draw(self, model: torch.nn.Module, step: int) -> list[int]:
        """Make the layers drawn for `step` the only trainable decoder layers; returns their indices."""
        blocks = unwrap(model).get_decoder().layers
        rng = random.Random(f"{self.seed}:{step // self.interval}")
        self.active = sorted(rng.sample(range(len(blocks)), min(self.layers, len(blocks))))
        for idx, block in enumerate(blocks):
            for param in block.parameters():
                param.requires_grad_(idx in self.active)
        logger.info("LISA: step %d trains layers %s", step, self.active)
        return self.active


def build_lisa(cfg: Any) -> Lisa | None:
    """The LISA callback when `lisa_activated_layers` > 0 (full tuning is checked in model/selective.py)."""
    methods = cfg.methods
    if not methods.lisa_activated_layers:
        return None
    return Lisa(methods.lisa_activated_layers, methods.lisa_step_interval, int(cfg.train.seed))
