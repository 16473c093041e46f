"""Sampling, mixing several datasets (concat / interleave) and splitting off validation and test sets."""

from __future__ import annotations

import logging
from typing import Any

import datasets
import numpy as np

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
AnyDataset = datasets.Dataset | datasets.IterableDataset
STOPPING = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted"}


def sample(ds: AnyDataset, num_samples: int | None, max_samples: int | None, seed: int) -> AnyDataset:
    """`num_samples` (per dataset: draw that many, repeating rows when it exceeds the size), then `max_samples`
    (keep the first N rows)."""
    if isinstance(ds, datasets.IterableDataset):
        return ds.take(num_samples) if num_samples is not None else ds
    if num_samples is not None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(ds))[:num_samples]
        extra = rng.choice(len(ds), num_samples - len(order)) if num_samples > len(order) else []
        ds = ds.select(np.concatenate([order, extra]).astype(np.int64))
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds


def merge(parts: list[AnyDataset], strategy: str, probs: Any, seed: int) -> AnyDataset:
    """One dataset from several: `concat`, or interleave until the first (`interleave_under`) or every
    (`interleave_over`) dataset is exhausted, drawing by `interleave_probs` (uniform when unset)."""
    if len(parts) == 1:
        return parts[0]
    if strategy == "concat":
        return datasets.concatenate_datasets(parts)
    if strategy not in STOPPING:
        raise ConfigError(f"mix_strategy: unknown {strategy!r}; allowed: concat, {', '.join(STOPPING)}")
    probabilities = parse_probs(probs, len(parts))
    return datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=STOPPING[strategy]
    )


def parse_probs(probs: Any, count: int) -> list[float] | None:
    """`interleave_probs` ("0.7,0.3" or a list) -> floats, one per dataset."""
    if probs is None or probs == "":
        return None
    values = [float(p) for p in (probs.split(",") if isinstance(probs, str) else probs)]
    if len(values) != count:
        raise ConfigError(f"interleave_probs: {len(values)} probabilities for {count} datasets")
    return values


def split_weights(split: Any) -> tuple[float, float]:
    """`split` "train,valid,test" weights -> (valid fraction, test fraction)."""
    weights = [float(w) for w in (split.split(",") if isinstance(split, str) else split)]
    total = sum(weights)
    return weights[1] / total, weights[2] / total


def split_dataset(
    ds: AnyDataset, val_size: float, split: Any, seed: int, shuffle: bool
) -> tuple[AnyDataset, AnyDataset | None, AnyDataset | None]:
    """(train, validation, test): `val_size` (a fraction < 1 or a count) or the `split` weights."""
    valid_frac, test_frac = split_weights(split) if split else (0.0, 0.0)
    if val_size and (valid_frac or test_frac):
        raise ConfigError("val_size and split both carve a validation set; set only one of them")
    if isinstance(ds, datasets.IterableDataset):
        if valid_frac or test_frac:
            raise ConfigError(
                "split: a streamed dataset has no length to split by weights; use an integer val_size"
            )
        if not val_size:
            return ds, None, None
        return ds.skip(int(val_size)), ds.take(int(val_size)), None
    if val_size:
        count = int(val_size) if val_size >= 1 else val_size
        parts = _cut(ds, count, seed, shuffle, "val_size")
        return parts[0], parts[1], None
    if not (valid_frac or test_frac):
        return ds, None, None
    rest, test = _cut(ds, test_frac, seed, shuffle, "split") if test_frac else (ds, None)
    if not valid_frac:
        return rest, None, test
    train, valid = _cut(rest, valid_frac / (1 - test_frac), seed, shuffle, "split")
    return train, valid, test


def _cut(ds: datasets.Dataset, size: float | int, seed: int, shuffle: bool, field: str) -> tuple[Any, Any]:
    n = len(ds)
    count = size if isinstance(size, int) else int(np.ceil(size * n))
    if not 0 < count < n:
        raise ConfigError(
            f"{field}: asks for {count} of {n} examples; both parts must keep at least one example"
        )
    parts = ds.train_test_split(test_size=count, seed=seed, shuffle=shuffle)
    return parts["train"], parts["test"]
