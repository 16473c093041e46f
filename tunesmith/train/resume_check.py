"""What a resume keeps from the checkpoint although the config says otherwise.

Loading a checkpoint restores the optimizer's hyper-parameters (learning rate, weight decay, betas, eps, ...),
which are also the schedule's base learning rates, so a value changed in the config since the checkpoint was written would be
silently ignored. Such a change is an error unless `keep_checkpoint_hparams` asks to go on with the checkpoint's
values. Changes that do take effect (the schedule's length, max_steps, epochs) are reported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")
# settings of torch's and tunesmith's optimizers that the config sets and training never changes (`lr` itself is
# the scheduled value; its base is `initial_lr`)
_KEYS = (
    "initial_lr",
    "weight_decay",
    "betas",
    "eps",
    "momentum",
    "dampening",
    "nesterov",
    "alpha",
    "amsgrad",
)
_NAMES = {"initial_lr": "learning_rate"}


def hparams(trainer: Trainer) -> dict[str, Any]:
    """The optimizer's hyper-parameters by readable name: one value, or one per parameter group where they
    differ (the schedule's base learning rates are the groups' `initial_lr`)."""
    found: dict[str, Any] = {}
    groups = trainer.optimizer.param_groups
    for key in _KEYS:
        values = [group[key] for group in groups if key in group]
        if values:
            same = all(_same(v, values[0]) for v in values)
            found[_NAMES.get(key, key)] = values[0] if same else tuple(values)
    return found


def check_resumed(trainer: Trainer, before: dict[str, Any], path: Path, state: dict[str, Any]) -> None:
    """Compare the hyper-parameters the config gave (`before`, taken before loading) with the checkpoint's; a
    difference is a ConfigError unless `keep_checkpoint_hparams`. Report a changed run length."""
    after = hparams(trainer)
    changed = {k: (v, after[k]) for k, v in before.items() if k in after and not _same(v, after[k])}
    if changed:
        listed = "; ".join(f"{k}: config {new!r}, checkpoint {old!r}" for k, (new, old) in changed.items())
        if not trainer.args.keep_checkpoint_hparams:
            raise ConfigError(
                f"resume_from_checkpoint: {path} was trained with other hyper-parameters ({listed}), and resuming "
                "keeps the checkpoint's. Set keep_checkpoint_hparams: true to go on with them, or start a new "
                "run (another output_dir) to use the new values"
            )
        logger.warning(
            "resume: keep_checkpoint_hparams: continuing with the checkpoint's values (%s)", listed
        )
    for key, now in (
        ("max_steps", trainer.plan.max_steps),
        ("num_train_epochs", trainer.plan.num_train_epochs),
    ):
        saved = state.get(key)
        if saved is not None and not _same(saved, now):
            logger.warning(
                "resume: %s changed from %s to %s; the learning-rate schedule follows the new length",
                key,
                saved,
                now,
            )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
