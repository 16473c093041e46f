"""(Continued) pre-training: plain-text blocks, every token supervised."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.recipes.common import run_stage
from tunesmith.train.trainer import TrainState


def run(cfg: TunesmithConfig) -> TrainState:
    """Pre-train the model of `cfg` on its text datasets and save the result to output_dir."""
    return run_stage(cfg, "pt")
