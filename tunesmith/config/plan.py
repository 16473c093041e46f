"""Derived numbers of a run (batch sizes, steps per epoch, total and warmup steps), as transformers.Trainer derives them."""

from __future__ import annotations

import dataclasses
import math

from tunesmith.config.loader import TunesmithConfig
from tunesmith.config.validate import data_parallel_size


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How many micro-batches, optimizer steps and epochs a run takes."""

    micro_batches_per_epoch: int  # on one data-parallel rank
    update_steps_per_epoch: int
    max_steps: int
    num_train_epochs: int  # epochs the loop enters (fractional epochs stop part-way through the last)
    warmup_steps: int


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything `tunesmith plan` prints besides the resolved config."""

    world_size: int
    data_parallel_size: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    num_examples: int | None
    steps: StepPlan | None


def micro_batches_per_rank(num_examples: int, batch_size: int, dp: int, drop_last: bool) -> int:
    """Micro-batches one rank sees per epoch: batches of the whole set, sharded evenly over ranks (accelerate's rule)."""
    total = num_examples // batch_size if drop_last else math.ceil(num_examples / batch_size)
    per_rank, rest = divmod(total, dp)
    return per_rank if drop_last or rest == 0 else per_rank + 1


def step_plan(
    micro_batches: int | None,
    accumulation: int,
    num_train_epochs: float,
    max_steps: int,
    warmup_steps: float,
    warmup_ratio: float,
) -> StepPlan:
    """Steps per epoch, total steps and warmup exactly as transformers.Trainer (5.23) derives them."""
    if micro_batches is None:
        if max_steps <= 0:
            raise ValueError("max_steps must be positive when the number of batches per epoch is unknown")
        per_epoch, epochs = max_steps, 1
    else:
        per_epoch = max(micro_batches // accumulation + int(micro_batches % accumulation > 0), 1)
        if max_steps > 0:
            epochs = max_steps // per_epoch + int(max_steps % per_epoch > 0)
        else:
            max_steps = math.ceil(num_train_epochs * per_epoch)
            epochs = math.ceil(num_train_epochs)
    return StepPlan(
        micro_batches or 0, per_epoch, max_steps, epochs, warmup_for(max_steps, warmup_steps, warmup_ratio)
    )


def step_interval(value: float, max_steps: int) -> int:
    """Steps between events (logging, saving, evaluating): an int as is, a fraction (< 1) of `max_steps` rounded
    up, as transformers does."""
    if value < 1:
        return max(1, math.ceil(max_steps * value))
    return int(value)


def warmup_for(max_steps: int, warmup_steps: float, warmup_ratio: float) -> int:
    """`warmup_steps` >= 1 is a count, 0 < warmup_steps < 1 a fraction (HF 5); otherwise `warmup_ratio` of the run."""
    if warmup_steps >= 1:
        return int(warmup_steps)
    ratio = warmup_steps if warmup_steps > 0 else warmup_ratio
    return math.ceil(max_steps * ratio)


def run_plan(
    cfg: TunesmithConfig, world_size: int, num_examples: int | None, micro_batches: int | None = None
) -> RunPlan:
    """The derived numbers for `cfg` on `world_size` processes over `num_examples` training examples.

    `micro_batches` (per rank per epoch) comes from the batcher when it is known exactly (dynamic batching,
    packing); otherwise it is derived from `num_examples` and the micro batch size.
    """
    train = cfg.train
    dp = data_parallel_size(cfg, world_size)
    steps = None
    if num_examples is not None or train.max_steps > 0:
        batches = micro_batches
        if batches is None and num_examples is not None:
            size = train.per_device_train_batch_size
            batches = micro_batches_per_rank(num_examples, size, dp, train.dataloader_drop_last)
        steps = step_plan(
            batches,
            train.gradient_accumulation_steps,
            train.num_train_epochs,
            train.max_steps,
            train.warmup_steps,
            train.warmup_ratio,
        )
    return RunPlan(
        world_size=world_size,
        data_parallel_size=dp,
        per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        global_batch_size=dp * train.per_device_train_batch_size * train.gradient_accumulation_steps,
        num_examples=num_examples,
        steps=steps,
    )
