"""When to save and when to evaluate: pure functions of the step, the epoch and the arguments (HF semantics)."""

from __future__ import annotations

from typing import Any

from tunesmith.config.plan import step_interval


def should_save(step: int, epoch_end: bool, epoch_index: int, args: Any, max_steps: int) -> bool:
    """Save after optimizer step `step`? `epoch_index` is the epoch just finished when `epoch_end`. With
    `steps`, the last step is saved too (as transformers does). `best` saves follow an evaluation that improved
    the best metric (best_model.py), not this function."""
    strategy = args.save_strategy
    if strategy == "steps":
        return step % step_interval(args.save_steps, max_steps) == 0 or step == max_steps
    if strategy == "epoch":
        return epoch_end and (epoch_index + 1) % args.save_epochs == 0
    return False


def should_evaluate(step: int, epoch_end: bool, epoch: float, args: Any, max_steps: int) -> bool:
    """Evaluate after optimizer step `step`? `eval_delay` counts epochs (strategy epoch) or steps (steps); with
    `steps` the last step is evaluated too (as transformers does)."""
    strategy = args.eval_strategy
    delay = args.eval_delay or 0
    if strategy == "steps":
        every = step_interval(args.eval_steps or args.logging_steps, max_steps)
        return step >= delay and (step % every == 0 or step == max_steps)
    if strategy == "epoch":
        return epoch_end and epoch >= delay
    return False
