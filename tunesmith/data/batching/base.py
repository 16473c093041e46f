"""The Batcher: this rank's micro-batches of one epoch, with an exact length, seeded shuffling and resumable state.

A strategy turns example lengths into *groups* (lists of example indices, one group per micro-batch). The Batcher
orders the groups for the epoch, gives each data-parallel rank its share, and collates a group into tensors when
it is reached.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from tunesmith.data.batching.workers import BatchWorkers

logger = logging.getLogger("tunesmith")
Groups = list[list[int]]
Batch = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """How examples become micro-batches.

    `plan(lengths, rng)` returns the groups; `per_epoch` says whether it is called again each epoch with that
    epoch's generator (its group count must not depend on the order), or once, after which only the order of the
    groups is shuffled. `collate(examples)` builds the micro-batch from a group's examples.

    `layout` and `rows` say whether a position carries over to another number of ranks: two runs whose strategies
    have the same `layout` cut the same ordered examples into groups, `rows` examples each when the groups are
    consecutive fixed-size slices of that order (then the micro batch size may differ), else the groups themselves
    are equal (`rows` None). A `layout` of None: positions never carry over.
    """

    name: str
    plan: Callable[[Sequence[int], random.Random | None], Groups]
    collate: Callable[[list[dict[str, Any]]], Batch]
    per_epoch: bool
    layout: str | None = None
    rows: int | None = None


def carried_position(
    state: dict[str, Any], world_size: int, layout: str | None, rows: int | None
) -> int | None:
    """This rank's micro-batch position that continues `state` (saved by a batcher on this or another number of
    ranks, every rank at the same position) on `world_size` ranks whose groups have `layout` and `rows` (see
    `Strategy`), or None when it does not carry over."""
    position, saved_world = int(state["position"]), int(state.get("world_size", world_size))
    if saved_world == world_size:
        return position
    if layout is None or state.get("layout") != layout:
        return None
    done = position * saved_world * (state.get("rows") or 1)  # groups (or examples) all ranks consumed
    per_position = world_size * (rows or 1)
    return done // per_position if done % per_position == 0 else None


class Batcher:
    """Iterable over this rank's micro-batches of the current epoch (see docs/INTERNALS.md)."""

    def __init__(
        self,
        fetch: Callable[[list[int]], list[dict[str, Any]]],
        lengths: Sequence[int],
        strategy: Strategy,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        workers: BatchWorkers | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.fetch, self.lengths, self.strategy = fetch, list(lengths), strategy
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.epoch = 0
        self._start = 0  # micro-batch to resume from in the current epoch
        self._position = 0  # micro-batches handed out in the current epoch
        self._fixed = None if strategy.per_epoch else strategy.plan(self.lengths, self._rng(0))
        self._length = len(self._rank_groups(self._epoch_groups()))

    # --- epoch plan -----------------------------------------------------------------------------------------------
    def _rng(self, epoch: int) -> random.Random | None:
        return random.Random(self.seed * 1_000_003 + epoch) if self.shuffle else None

    def _epoch_groups(self) -> Groups:
        rng = self._rng(self.epoch)
        if self._fixed is None:
            return self.strategy.plan(self.lengths, rng)
        groups = list(self._fixed)
        if rng is not None:
            rng.shuffle(groups)
        return groups

    def _rank_groups(self, groups: Groups) -> Groups:
        """This rank's share: every rank gets the same count (the last groups dropped with `drop_last`, else
        wrapped around from the start)."""
        if self.drop_last:
            per_rank = len(groups) // self.world_size
        else:
            per_rank = math.ceil(len(groups) / self.world_size)
            short = per_rank * self.world_size - len(groups)
            groups = groups + [groups[i % len(groups)] for i in range(short)] if groups else groups
        return groups[self.rank : per_rank * self.world_size : self.world_size]

    def groups(self) -> Groups:
        """The example indices of each of this rank's micro-batches in the current epoch."""
        return self._rank_groups(self._epoch_groups())

    # --- protocol -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Batch]:
        self._position = self._start
        groups = self.groups()[self._start :]
        batches: Iterator[Batch] = (
            map(self._build, groups) if self.workers is None else self.workers.map(self._build, groups)
        )
        for batch in batches:
            self._position += 1
            yield batch
        self._start = 0

    def _build(self, group: Sequence[int]) -> Batch:
        return self.strategy.collate(self.fetch(group))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows (a new epoch starts at its beginning)."""
        if epoch != self.epoch:
            self.epoch, self._start, self._position = epoch, 0, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: epoch and micro-batches already handed out in it (of `length`), and what maps that
        position onto another number of ranks."""
        s = self.strategy
        return {
            "epoch": self.epoch,
            "position": self._position,
            "length": self._length,
            "seed": self.seed,
            "world_size": self.world_size,
            "layout": s.layout,
            "rows": s.rows,
        }

    def position_for(self, state: dict[str, Any]) -> int | None:
        """The micro-batch of this rank's epoch that continues `state` (saved on this or another number of ranks;
        `len(self)` when the saved epoch was finished), or None when the position does not carry over."""
        if int(state["position"]) >= state.get("length", math.inf):
            return self._length
        return carried_position(state, self.world_size, self.strategy.layout, self.strategy.rows)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch after its last handed-out micro-batch (mapped onto
        this number of ranks when saved on another; see `position_for`)."""
        start = self.position_for(state)
        if start is None:
            raise ValueError(f"batcher state {state} does not carry over to {self.world_size} ranks")
        if "seed" in state and int(state["seed"]) != self.seed:
            logger.warning(
                "resuming with data seed %d, saved with %d: the rest of the epoch follows a different order",
                self.seed,
                int(state["seed"]),
            )
        self.epoch, self._start = int(state["epoch"]), start
        self._position = self._start
