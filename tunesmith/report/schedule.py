"""When a step is logged: HF `logging_strategy` / `logging_steps` / `logging_first_step` semantics."""

from __future__ import annotations

import math
from typing import Any


def logging_interval(logging_steps: float, max_steps: int) -> int:
    """Steps between log lines: `logging_steps`, or a fraction (< 1) of `max_steps` rounded up as HF does."""
    if logging_steps < 1:
        return max(1, math.ceil(max_steps * logging_steps))
    return int(logging_steps)


def should_log(step: int, max_steps: int, cfg: Any, *, epoch_end: bool = False) -> bool:
    """Whether optimizer step `step` (1-based) of `max_steps` is logged.

    `cfg` is the config or its `train` section; `epoch_end` says the step closed an epoch (strategy `epoch`).
    """
    args = getattr(cfg, "train", cfg)
    if args.logging_first_step and step == 1:  # HF logs the first step even under strategy "no"
        return True
    if args.logging_strategy == "no":
        return False
    if args.logging_strategy == "epoch":
        return epoch_end
    return step % logging_interval(args.logging_steps, max_steps) == 0
