"""`precompute_ref_log_probs`: the reference model's log-probabilities of every pair, computed once before
training and stored as `ref_chosen_logps` / `ref_rejected_logps` columns, so no reference is kept (or run) while
training. The pair objective reads them from the batch."""

from __future__ import annotations

import logging

import datasets
import torch

from tunesmith.data.batching.pairs import collate_preference
from tunesmith.data.batching.strategies import BatchSettings
from tunesmith.train.losses.dpo import reference_logps

logger = logging.getLogger("tunesmith")
COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def add_reference_logps(
    dataset: datasets.Dataset,
    model: torch.nn.Module,
    reference: torch.nn.Module | None,
    adapter_reference: bool,
    settings: BatchSettings,
    batch_size: int,
    ld_alpha: float | None = None,
) -> datasets.Dataset:
    """`dataset` with the two reference columns (pairs in order, `batch_size` at a time, padded)."""
    device = next(model.parameters()).device
    chosen: list[float] = []
    rejected: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) for k, v in collate_preference(rows, settings, packed=False).items()}
            logps = reference_logps(model, reference, batch, 2 * len(rows), adapter_reference)
            sums = logps.sums if ld_alpha is None else logps.length_desensitized(ld_alpha)
            c, r = sums.float().cpu().chunk(2)
            chosen += c.tolist()
            rejected += r.tolist()
    finally:
        model.train(was_training)
    dataset = dataset.remove_columns([c for c in COLUMNS if c in dataset.column_names])
    return dataset.add_column(COLUMNS[0], chosen).add_column(COLUMNS[1], rejected)
