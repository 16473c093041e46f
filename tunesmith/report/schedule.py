"""When a step is logged: HF `logging_strategy` / `logging_steps` / `logging_first_step` semantics."""

from __future__ import annotations

from typing import Any

from tunesmith.config.plan import step_interval


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
    return step % step_interval(args.logging_steps, max_steps) == 0
