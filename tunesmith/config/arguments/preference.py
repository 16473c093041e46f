"""PreferenceArguments: Preference and reward training (DPO, KTO, ORPO, SimPO, reward models): losses, reference model."""

from __future__ import annotations

from dataclasses import dataclass



@dataclass
class PreferenceArguments:
    """Preference and reward training (DPO, KTO, ORPO, SimPO, reward models): losses, reference model."""
