"""Learning-rate schedules: the `lr_scheduler_type` names of transformers, plus `lr_scheduler_config` plugins.

Each schedule is a multiplier of the optimizer's initial learning rate as a function of the optimizer step; the
curves equal `transformers.get_scheduler` step for step. `learning_rate_end` (alias `min_lr`) is the final
learning rate of `polynomial` and turns `cosine` into cosine-with-floor.

A plugin registers a factory `(optimizer, num_warmup_steps, num_training_steps, params) -> LRScheduler`::

    @LR_SCHEDULER.register("my_schedule", params=MyParams)
    def build(optimizer, num_warmup_steps, num_training_steps, params): ...
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from tunesmith.config.plugins import LR_SCHEDULER, PluginSpec, build_params
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def _warmup(step: int, warmup: int) -> float:
    return step / max(1, warmup)


def _progress(step: int, warmup: int, total: int) -> float:
    return (step - warmup) / max(1, total - warmup)


def constant(step: int, *, warmup: int, total: int) -> float:
    """1 throughout."""
    return 1.0


def constant_with_warmup(step: int, *, warmup: int, total: int) -> float:
    """Linear warmup, then 1."""
    return _warmup(step, warmup) if step < warmup else 1.0


def linear(step: int, *, warmup: int, total: int) -> float:
    """Linear warmup, then linear decay to 0 at `total`."""
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def cosine(step: int, *, warmup: int, total: int, num_cycles: float = 0.5, min_lr_rate: float = 0.0) -> float:
    """Linear warmup, then cosine decay (half a wave by default) to `min_lr_rate`."""
    if step < warmup:
        return _warmup(step, warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * _progress(step, warmup, total)))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def cosine_with_restarts(step: int, *, warmup: int, total: int, num_cycles: int = 1) -> float:
    """Linear warmup, then `num_cycles` cosine decays with hard restarts."""
    if step < warmup:
        return _warmup(step, warmup)
    progress = _progress(step, warmup, total)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))


def polynomial(
    step: int, *, warmup: int, total: int, lr_init: float, lr_end: float = 1e-7, power: float = 1.0
) -> float:
    """Linear warmup, then polynomial decay of power `power` from `lr_init` to `lr_end`."""
    if step < warmup:
        return _warmup(step, warmup)
    if step > total:
        return lr_end / lr_init
    remaining = 1 - (step - warmup) / (total - warmup)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def inverse_sqrt(step: int, *, warmup: int, total: int, timescale: int | None = None) -> float:
    """Linear warmup, then decay with the inverse square root of the step."""
    if step < warmup:
        return _warmup(step, warmup)
    scale = timescale or (warmup or 10_000)
    return 1.0 / math.sqrt((step + scale - warmup) / scale)


SCHEDULES = {
    f.__name__: f
    for f in (constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial, inverse_sqrt)
}
SCHEDULES["cosine_with_min_lr"] = cosine


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    num_warmup_steps: int,
    num_training_steps: int,
    kwargs: dict[str, Any] | None = None,
    learning_rate_end: float | None = None,
    power: float = 1.0,
) -> LambdaLR:
    """A LambdaLR following schedule `name`; `kwargs` are the schedule's extra parameters (lr_scheduler_kwargs)."""
    if name == "warmup_stable_decay":
        params = build_params(WarmupStableDecayParams, dict(kwargs or {}), "lr_scheduler_kwargs")
        return build_wsd(optimizer, num_warmup_steps, num_training_steps, params)
    if name not in SCHEDULES:
        raise ConfigError(
            f"lr_scheduler_type: {name!r} is not supported; choose one of {', '.join(SCHEDULES)}"
        )
    fn = SCHEDULES[name]
    params = _schedule_params(
        fn, name, dict(kwargs or {}), optimizer.defaults["lr"], learning_rate_end, power
    )
    bound = functools.partial(fn, warmup=num_warmup_steps, total=num_training_steps, **params)
    return LambdaLR(optimizer, bound)


def _schedule_params(
    fn: Any, name: str, kwargs: dict[str, Any], lr: float, lr_end: float | None, power: float
) -> dict[str, Any]:
    accepted = [
        p for p in inspect.signature(fn).parameters if p not in ("step", "warmup", "total", "lr_init")
    ]
    if "min_lr" in kwargs and name in ("cosine", "cosine_with_min_lr"):
        kwargs["min_lr_rate"] = kwargs.pop("min_lr") / lr
    if name == "polynomial":
        kwargs = {"power": power, **kwargs, "lr_init": lr}
        if lr_end is not None:
            kwargs.setdefault("lr_end", lr_end)
        if kwargs.get("lr_end", 1e-7) > lr:
            raise ConfigError(f"learning_rate_end ({kwargs['lr_end']}) must not exceed learning_rate ({lr})")
        accepted.append("lr_init")
    elif name in ("cosine", "cosine_with_min_lr") and lr_end is not None:
        kwargs.setdefault("min_lr_rate", lr_end / lr)
    elif (
        lr_end is not None
    ):  # MindSpeed configs carry min_lr whatever the schedule; it documents no effect here
        logger.warning(
            "learning_rate_end (min_lr) has no effect with the %s schedule (cosine and polynomial only)", name
        )
    if name == "cosine_with_min_lr" and "min_lr_rate" not in kwargs:
        raise ConfigError(
            "lr_scheduler_type cosine_with_min_lr needs learning_rate_end (min_lr) or min_lr_rate"
        )
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(
            f"lr_scheduler_kwargs: {unknown[0]!r} is not a parameter of the {name} schedule; "
            f"known: {', '.join(a for a in accepted if a != 'lr_init') or '(none)'}"
        )
    return kwargs


def build_plugin_scheduler(
    optimizer: Optimizer, spec: PluginSpec, num_warmup_steps: int, num_training_steps: int
) -> LRScheduler:
    """The scheduler of an `lr_scheduler_config` plugin."""
    factory = LR_SCHEDULER.get(spec.name).factory
    return factory(optimizer, num_warmup_steps, num_training_steps, spec.params)


_SHAPES = {
    "linear": lambda x: x,
    "cosine": lambda x: 0.5 * (1.0 - math.cos(math.pi * x)),
    "1-sqrt": lambda x: 1.0 - math.sqrt(1.0 - x),
}


@dataclasses.dataclass
class WarmupStableDecayParams:
    """Parameters of the warmup-stable-decay schedule (as transformers' `warmup_stable_decay`)."""

    num_decay_steps: int = 0
    num_stable_steps: int | None = None
    warmup_type: str = "linear"  # linear | cosine | 1-sqrt
    decay_type: str = "cosine"  # linear | cosine | 1-sqrt
    min_lr_ratio: float = 0.0


@LR_SCHEDULER.register("warmup_stable_decay", params=WarmupStableDecayParams)
def build_wsd(
    optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int, params: WarmupStableDecayParams
) -> LambdaLR:
    """Warmup, a constant plateau, then a decay over the last `num_decay_steps` down to `min_lr_ratio`."""
    for key in ("warmup_type", "decay_type"):
        if getattr(params, key) not in _SHAPES:
            raise ConfigError(
                f"warmup_stable_decay.{key}: {getattr(params, key)!r}; choose one of {', '.join(_SHAPES)}"
            )
    stable = params.num_stable_steps
    if stable is None:
        stable = num_training_steps - num_warmup_steps - params.num_decay_steps
    floor, decay = params.min_lr_ratio, params.num_decay_steps
    rise, fall = _SHAPES[params.warmup_type], _SHAPES[params.decay_type]

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return max(0.0, rise(_warmup(step, num_warmup_steps)) * (1.0 - floor) + floor)
        if step < num_warmup_steps + stable:
            return 1.0
        if step < num_warmup_steps + stable + decay:
            done = (step - num_warmup_steps - stable) / max(1, decay)
            return max(0.0, fall(1.0 - done) * (1.0 - floor) + floor)
        return floor

    return LambdaLR(optimizer, factor)
