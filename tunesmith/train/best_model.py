"""The best model (metric_for_best_model, greater_is_better) and early stopping on it, as transformers does."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tunesmith.train.callbacks import Callback
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")


def metric_key(name: str) -> str:
    """The key of `metric_for_best_model` in the evaluation metrics (`loss` -> `eval_loss`)."""
    return name if name.startswith("eval_") else f"eval_{name}"


def metric_value(metrics: dict[str, Any], name: str) -> float:
    """The value of metric `name` in `metrics`; a clear error naming the available ones when it is absent."""
    key = metric_key(name)
    if key not in metrics:
        shown = ", ".join(sorted(k for k in metrics if k.startswith("eval_")))
        raise ConfigError(f"metric_for_best_model: {name!r} is not an evaluation metric; available: {shown}")
    return float(metrics[key])


def improves(value: float, best: float | None, greater_is_better: bool, threshold: float = 0.0) -> bool:
    """Whether `value` beats `best` (None: anything does) by more than `threshold`."""
    if best is None:
        return True
    gain = value - best if greater_is_better else best - value
    return gain > threshold if threshold else gain > 0


class BestModel:
    """Tracks the best evaluation: its metric, step and checkpoint folder."""

    def __init__(self, metric: str | None, greater_is_better: bool | None) -> None:
        self.metric = metric
        self.greater_is_better = (
            greater_is_better if greater_is_better is not None else not (metric or "loss").endswith("loss")
        )
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.best_checkpoint: str | None = None

    def update(self, metrics: dict[str, Any], step: int) -> bool:
        """Record an evaluation at `step`; True when it is a new best."""
        if self.metric is None:
            return False
        value = metric_value(metrics, self.metric)
        if not improves(value, self.best_metric, self.greater_is_better):
            return False
        self.best_metric, self.best_step = value, step
        return True


class EarlyStopping(Callback):
    """Stops training after `patience` evaluations in a row that do not improve `metric` by more than
    `threshold` (transformers' EarlyStoppingCallback). Its counter is saved in checkpoints."""

    def __init__(self, metric: str, greater_is_better: bool, patience: int, threshold: float = 0.0) -> None:
        self.metric, self.greater_is_better = metric, greater_is_better
        self.patience, self.threshold = patience, threshold
        self.best: float | None = None
        self.bad_evaluations = 0

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Count evaluations without improvement; ask the trainer to stop when patience runs out."""
        value = metric_value(metrics, self.metric)
        if improves(value, self.best, self.greater_is_better, self.threshold):
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            logger.info(
                "early stopping at step %d: %s did not improve for %d evaluations",
                trainer.state.global_step,
                metric_key(self.metric),
                self.bad_evaluations,
            )
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Counter and best value, for the checkpoint."""
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.best, self.bad_evaluations = state["best"], state["bad_evaluations"]


def early_stopping_from(args: Any) -> EarlyStopping | None:
    """The early-stopping callback `early_stopping_patience` asks for (on metric_for_best_model), or None."""
    if not args.early_stopping_patience:
        return None
    metric = args.metric_for_best_model or "loss"
    greater = args.greater_is_better if args.greater_is_better is not None else not metric.endswith("loss")
    if args.eval_strategy == "no":
        raise ConfigError("early_stopping_patience: needs evaluations; set eval_strategy to steps or epoch")
    return EarlyStopping(metric, greater, args.early_stopping_patience, args.early_stopping_threshold)
