"""Supervised fine-tuning: chat/instruction examples with prompt tokens masked out of the loss."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.recipes.common import run_stage
from tunesmith.train.trainer import TrainState


def run(cfg: TunesmithConfig) -> TrainState:
    """Fine-tune the model of `cfg` on its SFT datasets and save the result to output_dir."""
    return run_stage(cfg, "sft")
