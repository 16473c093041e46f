"""Evaluation of the preference stages: the stage's own loss and metrics (rewards/*, logps/*, ...) over each eval
set, averaged per pair (per example for KTO), as TRL reports them (`eval_loss`, `eval_rewards/chosen`, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tunesmith.data.batching.pairs import collate_preference
from tunesmith.data.batching.strategies import BatchSettings


class PreferenceEvaluator:
    """Evaluates `objective` (a train/losses objective) on named eval sets of processed preference rows."""

    def __init__(
        self,
        eval_sets: Mapping[str, Any],
        objective: Any,
        settings: BatchSettings,
        batch_size: int,
        *,
        packed: bool = False,
        pairs: bool = True,
        prefix: str = "eval",
    ) -> None:
        self.eval_sets, self.objective, self.settings = dict(eval_sets), objective, settings
        self.batch_size, self.packed, self.pairs, self.prefix = batch_size, packed, pairs, prefix

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Metrics of every set (`eval_<name>_...` when there are several); the model's mode is restored."""
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        try:
            for name, rows in self.eval_sets.items():
                prefix = self.prefix if len(self.eval_sets) == 1 else f"{self.prefix}_{name}"
                metrics.update(self.evaluate_set(model, rows, prefix))
        finally:
            model.train(was_training)
        return metrics

    def evaluate_set(self, model: torch.nn.Module, rows: Any, prefix: str) -> dict[str, float]:
        """Loss per unit (pair or example) and the objective's metrics over `rows`, in order."""
        device = next(model.parameters()).device
        self.objective.step_metrics()  # start from empty sums
        total, units = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                chunk = [rows[i] for i in range(start, min(start + self.batch_size, len(rows)))]
                batch = collate_preference(chunk, self.settings, packed=self.packed, pairs=self.pairs)
                batch = {k: v.to(device) for k, v in batch.items()}
                loss, aux = self.objective(model, batch)
                total += loss.detach() + aux.detach()
                units += self.objective.units(batch)
        metrics = self.objective.step_metrics()
        out = {"loss": float(total / units.clamp(min=1)), **metrics}
        return {f"{prefix}_{k}": v for k, v in out.items()}
