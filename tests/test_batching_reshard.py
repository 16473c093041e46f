"""A batcher position saved on one number of ranks, continued on another (`Batcher.position_for`): with the same
global batch, every optimizer step after the resume takes the same examples as the run that was not interrupted; where the micro-batches cannot map, the position does not carry over."""

from __future__ import annotations

import dataclasses
import random

import datasets
import pytest

from tunesmith.data.batching import StreamBatcher, strategies
from tunesmith.data.batching.base import Batcher

LENGTHS = [random.Random(0).randint(2, 40) for _ in range(96)]
GLOBAL_BATCH = 8


def _batchers(name: str, world: int, micro: int, **settings) -> list[Batcher]:
    """The `world` ranks' batchers of strategy `name`; a micro-batch is its list of example indices."""
    s = strategies.BatchSettings(micro_batch_size=micro, cutoff_len=40, pad_id=0, **settings)
    strategy = dataclasses.replace(getattr(strategies, name)(s), collate=list)
    return [Batcher(list, LENGTHS, strategy, seed=3, rank=r, world_size=world) for r in range(world)]


def _steps(batchers: list[Batcher], epoch: int) -> list[list[int]]:
    """The examples of each optimizer step of `epoch` (rank 0's micro-batches first, as the loss sums them)."""
    for b in batchers:
        b.set_epoch(epoch)
    per_rank = [list(b) for b in batchers]
    ga = GLOBAL_BATCH // (len(batchers) * batchers[0].strategy.rows)
    micro = [[i for rank in per_rank for i in rank[m]] for m in range(len(per_rank[0]))]
    steps = [micro[k : k + ga] for k in range(0, len(micro), ga)]
    return [sorted(i for mb in step for i in mb) for step in steps]


def _advance(batcher: Batcher, epoch: int, micro_batches: int) -> Batcher:
    batcher.set_epoch(epoch)
    it = iter(batcher)
    for _ in range(micro_batches):
        next(it)
    return batcher


def _resume(saved: list[Batcher], target: list[Batcher], steps_done: int, epoch: int) -> list[list[int]]:
    """Run `saved` for `steps_done` steps of `epoch`, move rank 0's state to `target`, return target's steps."""
    for b in saved:
        _advance(b, epoch, steps_done * GLOBAL_BATCH // (len(saved) * b.strategy.rows))
    state = saved[0].state_dict()
    for b in target:
        b.load_state_dict(state)
    return _steps(target, epoch)


@pytest.mark.parametrize("name", ["normal", "padding_free"])
@pytest.mark.parametrize(
    ("before", "after"), [((2, 2), (1, 4)), ((1, 4), (2, 2)), ((2, 2), (1, 2)), ((1, 2), (4, 1))]
)
def test_fixed_count_positions_map_across_ranks_and_micro_batch_sizes(name, before, after):
    full = _steps(_batchers(name, *before), epoch=1)
    resumed = _resume(_batchers(name, *before), _batchers(name, *after), steps_done=5, epoch=1)
    assert resumed == full[5:]


def test_budget_groups_map_when_the_micro_batch_size_stays():
    saved, target = _batchers("dynamic_batching", 2, 4), _batchers("dynamic_batching", 1, 4)
    for b in saved:
        _advance(b, 1, 3)
    state = saved[0].state_dict()
    assert target[0].position_for(state) == 6
    full = [g for k in range(len(saved[0])) for g in (saved[0].groups()[k], saved[1].groups()[k])]
    target[0].load_state_dict(state)
    target[0].set_epoch(1)
    assert list(target[0]) == full[6 : len(target[0])]


def test_positions_that_do_not_map_carry_over_as_none():
    state = _advance(_batchers("dynamic_padding_free", 2, 2)[0], 0, 3).state_dict()
    assert (
        _batchers("dynamic_padding_free", 1, 4)[0].position_for(state) is None
    )  # groups depend on the budget
    assert _batchers("normal", 1, 4, group_by_length=True)[0].position_for(state) is None
    with pytest.raises(ValueError, match="does not carry over"):
        _batchers("dynamic_padding_free", 1, 4)[0].load_state_dict(state)
    odd = _advance(_batchers("normal", 2, 2)[0], 0, 3).state_dict()
    one = _batchers("normal", 1, 8)[0]
    assert (
        one.position_for(odd) is None
    )  # 12 examples consumed: not a whole number of 8-example micro-batches
    assert one.position_for({**odd, "position": odd["length"]}) == len(one)  # a finished epoch stays finished


def test_stream_positions_map_by_examples():
    stream = datasets.Dataset.from_dict({"input_ids": [[i] for i in range(40)]}).to_iterable_dataset()
    normal = dataclasses.replace(strategies.normal(strategies.BatchSettings(2, 8, 0)), collate=list)
    saved = [StreamBatcher(stream, normal, 2, rank=r, world_size=2) for r in range(2)]
    for b in saved:
        _advance(b, 0, 3)  # 12 examples read by the two ranks together
    one = StreamBatcher(stream, normal, 4)
    one.load_state_dict(saved[0].state_dict())
    assert [ex["input_ids"][0] for ex in next(iter(one))] == [12, 13, 14, 15]
