"""The evaluation loop: token-weighted loss (the training normalisation over the whole eval set), perplexity, token
accuracy, one metric set per eval dataset, and a user `compute_metrics` hook (whole-set or batch by batch)."""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.train.loss import IGNORE_INDEX, token_ce_sum
from tunesmith.train.precision import cast_for_eval, eval_dtype
from tunesmith.utils.errors import ConfigError

if (
    TYPE_CHECKING
):  # transformers' trainer utilities import peft (seconds); only a compute_metrics hook needs them
    from transformers import EvalPrediction

Batch = dict[str, torch.Tensor]
MetricsHook = Callable[..., dict[str, float]]


def load_hook(spec: str) -> MetricsHook:
    """Import a `compute_metrics` function given as "module:function"."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"compute_metrics: {spec!r} must be written as 'module:function'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"compute_metrics: cannot import {spec!r}: {exc}") from exc


def eval_batches(rows: Sequence[Mapping[str, Any]], batch_size: int, pad_id: int) -> Iterator[Batch]:
    """Right-padded batches of `rows` (dicts with `input_ids`, `labels`) in order, `batch_size` rows each."""
    for start in range(0, len(rows), batch_size):
        chunk = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(r["input_ids"]),
                torch.tensor(r["labels"]),
                1,
            )
        yield {"input_ids": ids, "labels": labels, "attention_mask": mask}


class Evaluator:
    """Evaluates a model on named eval sets; metric keys are `eval_<metric>` (one set) or
    `eval_<name>_<metric>` (several, eval_on_each_dataset); `prefix` replaces `eval` (e.g. `predict`)."""

    def __init__(
        self,
        eval_sets: Mapping[str, Sequence[Mapping[str, Any]]],
        args: Any,
        pad_id: int,
        compute_metrics: MetricsHook | None = None,
        prefix: str = "eval",
    ) -> None:
        self.eval_sets, self.args, self.pad_id = dict(eval_sets), args, pad_id
        self.compute_metrics, self.prefix = compute_metrics, prefix

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """All eval sets; the model is put back in its previous train/eval mode (and, after `bf16_full_eval` /
        `fp16_full_eval` cast it, its own weights)."""
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        try:
            with cast_for_eval(model, eval_dtype(self.args)):
                metrics.update(self._evaluate_sets(model))
        finally:
            model.train(was_training)
        if len(self.eval_sets) > 1:
            metrics.update(self._combined(metrics))
        return metrics

    def _evaluate_sets(self, model: torch.nn.Module) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, rows in self.eval_sets.items():
            prefix = self.prefix if len(self.eval_sets) == 1 else f"{self.prefix}_{name}"
            metrics.update(self.evaluate_set(model, rows, prefix))
        return metrics

    def _combined(self, metrics: dict[str, float]) -> dict[str, float]:
        """Token-weighted loss, perplexity and accuracy over all sets (so `eval_loss` can rank checkpoints)."""
        keys = [f"{self.prefix}_{name}" for name in self.eval_sets]
        tokens = sum(metrics[f"{k}_tokens"] for k in keys)
        loss = sum(metrics[f"{k}_loss"] * metrics[f"{k}_tokens"] for k in keys) / max(tokens, 1)
        accuracy = sum(metrics[f"{k}_accuracy"] * metrics[f"{k}_tokens"] for k in keys) / max(tokens, 1)
        p = self.prefix
        return {
            f"{p}_loss": loss,
            f"{p}_perplexity": math.exp(min(loss, 700.0)),
            f"{p}_accuracy": accuracy,
            f"{p}_tokens": tokens,
        }

    def evaluate_set(
        self, model: torch.nn.Module, rows: Sequence[Mapping[str, Any]], prefix: str
    ) -> dict[str, float]:
        """Loss, perplexity, token accuracy (and the hook's metrics) of one eval set."""
        a, device = self.args, next(model.parameters()).device
        tick = time.perf_counter()
        total_ce, tokens, correct = 0.0, 0, 0
        gathered: _Gathered = _Gathered(a, self.compute_metrics)
        with torch.no_grad():
            for batch in eval_batches(rows, a.per_device_eval_batch_size, self.pad_id):
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = model(**batch, use_cache=False).logits
                ce = token_ce_sum(logits, batch["labels"])
                valid = batch["labels"][:, 1:] != IGNORE_INDEX
                predicted = logits[:, :-1].argmax(-1)
                total_ce += float(ce)
                tokens += int(valid.sum())
                correct += int(((predicted == batch["labels"][:, 1:]) & valid).sum())
                gathered.add(batch, predicted, float(ce) / max(int(valid.sum()), 1))
        loss = total_ce / max(tokens, 1)
        out = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": correct / max(tokens, 1),
            "tokens": tokens,
            "runtime": time.perf_counter() - tick,
        }
        out.update(gathered.finish())
        return {f"{prefix}_{k}": v for k, v in out.items()}


class _Gathered:
    """Predictions/labels (and inputs/losses per include_for_metrics) for the compute_metrics hook.

    Outputs stay on the model's device and move to the CPU every `eval_accumulation_steps` batches (unset: at the
    end, as HF does); `eval_do_concat_batches: false` hands the hook one array per batch instead of one array."""

    def __init__(self, args: Any, hook: MetricsHook | None) -> None:
        self.hook = None if args.prediction_loss_only else hook
        self.include = set(args.include_for_metrics or [])
        self.per_batch = args.batch_eval_metrics
        self.concat = args.eval_do_concat_batches
        self.every = args.eval_accumulation_steps
        self.parts: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("predictions", "label_ids", "inputs", "losses")
        }
        self.on_device = 0  # batches at the end of `parts` not yet moved to the CPU
        self.last: EvalPrediction | None = None

    def add(self, batch: Batch, predicted: torch.Tensor, loss: float) -> None:
        """Keep this batch's predictions (argmax token ids, aligned with labels[:, 1:]) for the hook."""
        if self.hook is None:
            return
        part = {
            "predictions": predicted,
            "label_ids": batch["labels"][:, 1:],
            "inputs": batch["input_ids"],
            "losses": torch.tensor([loss]),
        }
        if self.per_batch:  # batch_eval_metrics: the hook accumulates; the last call returns the result
            if self.last is not None:
                self.hook(self.last, compute_result=False)
            self.last = self._prediction({k: [v.cpu()] for k, v in part.items()})
            return
        for k, v in part.items():
            self.parts[k].append(v)
        self.on_device += 1
        if self.every is not None and self.on_device >= self.every:
            self._to_cpu()

    def _to_cpu(self) -> None:
        for values in self.parts.values():
            values[len(values) - self.on_device :] = [v.cpu() for v in values[len(values) - self.on_device :]]
        self.on_device = 0

    def finish(self) -> dict[str, float]:
        """The hook's metrics over the whole set ({} without a hook)."""
        if self.hook is None:
            return {}
        if self.per_batch:
            return dict(self.hook(self.last, compute_result=True)) if self.last is not None else {}
        self._to_cpu()
        return dict(self.hook(self._prediction(self.parts)))

    def _prediction(self, parts: dict[str, list[torch.Tensor]]) -> EvalPrediction:
        from transformers import EvalPrediction

        if self.concat:
            arrays: dict[str, Any] = {k: _concat(v).numpy() for k, v in parts.items()}
        else:
            arrays = {k: [t.numpy() for t in v] for k, v in parts.items()}
        return EvalPrediction(
            predictions=arrays["predictions"],
            label_ids=arrays["label_ids"],
            inputs=arrays["inputs"] if "inputs" in self.include else None,
            losses=arrays["losses"] if "loss" in self.include else None,
        )


def _concat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate rows of different widths, right-padding with -100."""
    if tensors[0].dim() == 1:
        return torch.cat(tensors)
    width = max(t.size(1) for t in tensors)
    return torch.cat(
        [torch.nn.functional.pad(t, (0, width - t.size(1)), value=IGNORE_INDEX) for t in tensors]
    )
