"""Reward modelling: a scalar score head on the causal LM, trained on chosen/rejected pairs (pairwise loss)."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.model.value_head import load_reward_model
from tunesmith.recipes.common import run_stage
from tunesmith.recipes.preference import PreferenceStage
from tunesmith.train.losses.reward import RewardObjective
from tunesmith.train.trainer import TrainState


def run(cfg: TunesmithConfig) -> TrainState:
    """Train a reward model on the pairs of `cfg`; output_dir loads as AutoModelForSequenceClassification."""
    stage = PreferenceStage(
        lambda c, model, ref, adapter: RewardObjective(c.preference, model),
        with_reference=lambda c: False,
        load=load_reward_model,
    )
    return run_stage(cfg, "rm", stage.parts())
