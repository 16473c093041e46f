"""The callbacks the method arguments ask for: LISA's layer draws, PiSSA's conversion, AdaLoRA's rank budget."""

from __future__ import annotations

from typing import Any

from tunesmith.train.adalora import build_adalora_budget
from tunesmith.train.callbacks import Callback
from tunesmith.train.lisa import build_lisa
from tunesmith.train.pissa_convert import build_pissa_convert


def method_callbacks(cfg: Any) -> list[Callback]:
    """Those of LISA (lisa_activated_layers), pissa_convert and finetuning_type adalora that `cfg` turns on."""
    built = (build_lisa(cfg), build_pissa_convert(cfg), build_adalora_budget(cfg))
    return [c for c in built if c is not None]
