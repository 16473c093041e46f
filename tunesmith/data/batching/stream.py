"""Micro-batches from a streamed dataset (`streaming: true`): fixed-count strategies only, no length known."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import datasets

from tunesmith.data.batching.base import Batch, Strategy, carried_position
from tunesmith.utils.errors import ConfigError

STREAMABLE = ("normal", "padding_free", "document_rows")


class StreamBatcher:
    """Iterable over this rank's micro-batches of a stream: every `world_size`-th example from `rank` on, grouped
    `micro_batch_size` at a time (the dataset's own buffer shuffle orders it). It has no `__len__`."""

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        strategy: Strategy,
        micro_batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if strategy.name not in STREAMABLE:
            raise ConfigError(
                f"batching_strategy: {strategy.name!r} needs every example's length up front, which a "
                f"streamed dataset does not have; with streaming use one of {', '.join(STREAMABLE)}"
            )
        self.dataset, self.strategy, self.micro_batch_size = dataset, strategy, micro_batch_size
        self.rank, self.world_size = rank, world_size
        # the stream's order does not depend on the micro batch size: positions map by examples (see Strategy)
        self.layout = f"stream:{strategy.name}"
        self.epoch, self._start, self._position = 0, 0, 0

    def __iter__(self) -> Iterator[Batch]:
        examples = itertools.islice(iter(self.dataset), self.rank, None, self.world_size)
        groups = _batched(examples, self.micro_batch_size)
        self._position = self._start
        for group in itertools.islice(groups, self._start, None):
            self._position += 1
            yield self.strategy.collate(group)
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the stream's buffer for `epoch`."""
        if epoch != self.epoch:
            self.epoch, self._start, self._position = epoch, 0, 0
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and micro-batches handed out in it, and what maps that position onto another number of ranks."""
        return {
            "epoch": self.epoch,
            "position": self._position,
            "world_size": self.world_size,
            "layout": self.layout,
            "rows": self.micro_batch_size,
        }

    def position_for(self, state: dict[str, Any]) -> int | None:
        """The micro-batch of this rank's share that continues `state` (saved on this or another number of
        ranks: all ranks together read the stream's first examples), or None when it does not carry over."""
        return carried_position(state, self.world_size, self.layout, self.micro_batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume after the saved position (the stream is re-read up to it)."""
        start = self.position_for(state)
        if start is None:
            raise ValueError(f"stream state {state} does not carry over to {self.world_size} ranks")
        self.epoch, self._start = int(state["epoch"]), start
        self._position = self._start


def _batched(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk
