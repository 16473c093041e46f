"""Direct preference optimisation and its relatives (IPO, hinge, robust, BCO pair, ORPO, SimPO, weighted lists of
them: `pref_loss`; TRL's reference-free CPO losses) on chosen/rejected pairs."""

from __future__ import annotations

from typing import Any

from torch import nn

from tunesmith.config import TunesmithConfig
from tunesmith.recipes.common import run_stage
from tunesmith.recipes.preference import PreferenceStage
from tunesmith.train.losses import cpo
from tunesmith.train.losses.dpo import PairObjective, needs_reference
from tunesmith.train.trainer import TrainState


def objective(cfg: TunesmithConfig, model: nn.Module, ref: nn.Module | None, adapter: bool) -> Any:
    """The pair loss `pref_loss` names: a CPO one, or the DPO family's (reference-based or not)."""
    if cpo.uses_cpo(cfg.preference):
        return cpo.CPOObjective(cfg.preference)
    return PairObjective(cfg.preference, ref, adapter)


def run(cfg: TunesmithConfig) -> TrainState:
    """Train the policy of `cfg` on its preference pairs and save it to output_dir."""
    cpo.check_options(cfg)
    stage = PreferenceStage(objective, with_reference=lambda c: needs_reference(c.preference))
    return run_stage(cfg, "dpo", stage.parts())
