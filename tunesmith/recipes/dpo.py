"""Direct preference optimisation and its relatives (IPO, hinge, robust, BCO pair, ORPO, SimPO, weighted lists of
them: `pref_loss`) on chosen/rejected pairs."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.recipes.common import run_stage
from tunesmith.recipes.preference import PreferenceStage
from tunesmith.train.losses.dpo import PairObjective, needs_reference
from tunesmith.train.trainer import TrainState


def run(cfg: TunesmithConfig) -> TrainState:
    """Train the policy of `cfg` on its preference pairs and save it to output_dir."""
    stage = PreferenceStage(
        lambda c, model, ref, adapter: PairObjective(c.preference, ref, adapter),
        with_reference=lambda c: needs_reference(c.preference),
    )
    return run_stage(cfg, "dpo", stage.parts())
