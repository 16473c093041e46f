"""Bin packing: best-fit decreasing of example lengths into bins of a token capacity, and offline packing of a
dataset into `cutoff_len` rows (`packing` / `neat_packing`) with a report of how full the rows are."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import datasets

from tunesmith.data.batching.collate import WEIGHTS, pack_row
from tunesmith.utils.errors import DataError


@dataclasses.dataclass(frozen=True)
class PackingReport:
    """How well examples filled the packed rows."""

    examples: int
    rows: int
    tokens: int
    capacity: int  # rows x cutoff_len

    @property
    def efficiency(self) -> float:
        """Share of the rows' token capacity holding real tokens."""
        return self.tokens / self.capacity if self.capacity else 0.0

    def describe(self) -> str:
        """One log line."""
        return (
            f"packed {self.examples} examples into {self.rows} rows: "
            f"{self.tokens} of {self.capacity} token slots used ({self.efficiency:.1%})"
        )


def best_fit_decreasing(
    lengths: Sequence[int], capacity: int, order: Sequence[int] | None = None
) -> list[list[int]]:
    """Group indices into bins whose summed lengths stay within `capacity`: longest first, each into the fullest
    bin that still has room (ties broken by `order`, the visiting order of equal lengths). O(n log n)."""
    visit = list(order) if order is not None else list(range(len(lengths)))
    visit.sort(key=lambda i: -lengths[i])  # stable: equal lengths keep the given order
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (room left, bin id)
    for i in visit:
        need = lengths[i]
        if need > capacity:
            raise DataError(f"training data row {i}: {need} tokens exceed the bin capacity of {capacity}")
        pos = bisect.bisect_left(free, (need, -1))
        if pos < len(free):
            room, b = free.pop(pos)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - need > 0:
            bisect.insort(free, (room - need, b))
    return bins


def pack_dataset(
    dataset: datasets.Dataset, lengths: Sequence[int], cutoff_len: int
) -> tuple[datasets.Dataset, PackingReport]:
    """Pack `dataset` (input_ids, labels) into rows of at most `cutoff_len` tokens with `position_ids` restarting
    at 0 per example; attention stays inside each example when the model gets those `position_ids`."""
    bins = best_fit_decreasing(lengths, cutoff_len)
    names = [c for c in ("input_ids", "labels", WEIGHTS) if c in dataset.column_names]
    columns = dataset.select_columns(names)
    rows: dict[str, list] = {key: [] for key in [*names, "position_ids"]}
    for members in bins:
        part = columns[members]
        row = pack_row(
            [dict(zip(names, values, strict=True)) for values in zip(*(part[n] for n in names), strict=True)]
        )
        for key, value in row.items():
            rows[key].append(value)
    report = PackingReport(len(lengths), len(bins), int(sum(lengths)), len(bins) * cutoff_len)
    return datasets.Dataset.from_dict(rows), report
