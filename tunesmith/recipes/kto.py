"""KTO: preference training from single examples labelled desirable or undesirable (`kto_tag`)."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.recipes.common import run_stage
from tunesmith.recipes.preference import PreferenceStage
from tunesmith.train.losses.kto import KTOObjective
from tunesmith.train.trainer import TrainState


def run(cfg: TunesmithConfig) -> TrainState:
    """Train the policy of `cfg` on its labelled examples and save it to output_dir."""
    stage = PreferenceStage(
        lambda c, model, ref, adapter: KTOObjective(c.preference, ref, adapter), pairs=False
    )
    return run_stage(cfg, "kto", stage.parts())
