"""Batching engine: strategies that turn processed examples into micro-batches (docs/INTERNALS.md, Batching)."""

from tunesmith.data.batching.base import Batcher, Strategy
from tunesmith.data.batching.builder import batch_settings, build_batcher, example_lengths
from tunesmith.data.batching.packing import PackingReport, best_fit_decreasing, pack_dataset
from tunesmith.data.batching.stream import StreamBatcher

__all__ = [
    "Batcher",
    "PackingReport",
    "StreamBatcher",
    "Strategy",
    "batch_settings",
    "best_fit_decreasing",
    "build_batcher",
    "example_lengths",
    "pack_dataset",
]
