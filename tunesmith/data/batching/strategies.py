"""The batching strategies of `batching_strategy`, registered in `tunesmith.config.plugins.BATCHING`.

- normal: a fixed count of examples per micro-batch, padded to the longest (HF `group_by_length`: megabatches
  sorted by length).
- padding_free: the same examples concatenated into one row (`position_ids` restart per example, no padding).
- dynamic_batching: as many examples as fit `micro_batch_size x cutoff_len` padded tokens, lengths sorted
  within windows so a micro-batch holds similar lengths; planned once, so the count per epoch is exact.
- dynamic_padding_free: as many examples as fit that budget of real tokens (best-fit decreasing), packed.
- document_rows: pre-training blocks with attention kept inside each document (`neat_packing`, stage pt).
- packed_rows: rows packed offline (`packing` / `neat_packing`), `micro_batch_size` rows per micro-batch.

A user strategy registers like the built-ins: `@BATCHING.register("mine", params=MyParams)` on a factory
`(settings: BatchSettings, params: MyParams) -> Strategy`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Sequence

from tunesmith.config.plugins import BATCHING
from tunesmith.data.batching.base import Groups, Strategy
from tunesmith.data.batching.collate import pack_row, packed_collate, pad_collate, split_after
from tunesmith.data.batching.packing import best_fit_decreasing

MEGABATCH = 50  # micro-batches per length-sorted window (HF group_by_length uses 50 as well)


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """What every strategy needs from the config and the tokenizer."""

    micro_batch_size: int
    cutoff_len: int
    pad_id: int
    left_padding: bool = False
    mask_4d: bool = False
    group_by_length: bool = False
    drop_last: bool = False
    separator_id: int | None = None  # document separator (EOS) of pre-training blocks, for neat_packing
    label_pad_id: int = -100  # the pad token id when ignore_pad_token_for_loss is off

    @property
    def budget(self) -> int:
        """Token budget of one micro-batch."""
        return self.micro_batch_size * self.cutoff_len


# --- plans ------------------------------------------------------------------------------------------------------
def _order(n: int, rng: random.Random | None) -> list[int]:
    order = list(range(n))
    if rng is not None:
        rng.shuffle(order)
    return order


def _chunks(order: Sequence[int], size: int, drop_last: bool) -> Groups:
    groups = [list(order[i : i + size]) for i in range(0, len(order), size)]
    return groups[:-1] if drop_last and groups and len(groups[-1]) < size else groups


def fixed_count_plan(lengths: Sequence[int], rng: random.Random | None, s: BatchSettings) -> Groups:
    """`micro_batch_size` examples per group in shuffled order (or sequential); with `group_by_length`, each
    window of 50 micro-batches is sorted by length, longest first, and the longest group leads the epoch."""
    order = _order(len(lengths), rng)
    if not s.group_by_length:
        return _chunks(order, s.micro_batch_size, s.drop_last)
    window = MEGABATCH * s.micro_batch_size
    order = [
        i
        for w in range(0, len(order), window)
        for i in sorted(order[w : w + window], key=lambda i: -lengths[i])
    ]
    groups = _chunks(order, s.micro_batch_size, s.drop_last)
    longest = max(range(len(groups)), key=lambda g: max(lengths[i] for i in groups[g]), default=0)
    if groups:
        groups[0], groups[longest] = groups[longest], groups[0]
    return groups


def padded_budget_plan(lengths: Sequence[int], rng: random.Random | None, s: BatchSettings) -> Groups:
    """Groups whose padded size (count x longest) fits the budget; lengths sorted within windows."""
    order = _order(len(lengths), rng)
    window = MEGABATCH * s.micro_batch_size
    groups: Groups = []
    for w in range(0, len(order), window):
        current: list[int] = []
        longest = 0
        for i in sorted(order[w : w + window], key=lambda i: lengths[i]):
            if current and max(longest, lengths[i]) * (len(current) + 1) > s.budget:
                groups.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, lengths[i])
        if current:
            groups.append(current)
    return groups


def token_budget_plan(lengths: Sequence[int], rng: random.Random | None, s: BatchSettings) -> Groups:
    """Groups of at most `budget` real tokens, by best-fit decreasing (equal lengths in shuffled order)."""
    return best_fit_decreasing(lengths, s.budget, _order(len(lengths), rng))


# --- collators --------------------------------------------------------------------------------------------------
def _pad(examples: list[dict], s: BatchSettings) -> dict:
    return pad_collate(
        examples, s.pad_id, left=s.left_padding, mask_4d=s.mask_4d, label_pad_id=s.label_pad_id
    )


def _concat(examples: list[dict], s: BatchSettings) -> dict:
    return packed_collate([pack_row(examples)], s.pad_id, mask_4d=s.mask_4d)


def _rows(rows: list[dict], s: BatchSettings) -> dict:
    return packed_collate(rows, s.pad_id, mask_4d=s.mask_4d)


def _documents(blocks: list[dict], s: BatchSettings) -> dict:
    rows = [pack_row(split_after(block, s.separator_id)) for block in blocks]
    return packed_collate(rows, s.pad_id, mask_4d=s.mask_4d)


def _strategy(name: str, plan, collate, s: BatchSettings, per_epoch: bool) -> Strategy:
    layout, rows = _layout(name, plan, s)
    return Strategy(
        name, functools.partial(plan, s=s), functools.partial(collate, s=s), per_epoch, layout, rows
    )


def _layout(name: str, plan, s: BatchSettings) -> tuple[str, int | None]:
    """What shapes the groups (see `Strategy`): fixed-count slices of the shuffled order are the same examples
    for any micro batch size; length-sorted windows and token budgets depend on it."""
    if plan is fixed_count_plan and not s.group_by_length:
        return f"{name}:cutoff_len={s.cutoff_len}", s.micro_batch_size
    return (
        f"{name}:micro_batch_size={s.micro_batch_size}:cutoff_len={s.cutoff_len}:by_length={s.group_by_length}",
        None,
    )


# --- registered strategies --------------------------------------------------------------------------------------
@BATCHING.register("normal", help="Fixed count per micro-batch, padded to the longest example in it.")
def normal(settings: BatchSettings, params: object = None) -> Strategy:
    """Fixed count per micro-batch, padded to the longest example in it."""
    return _strategy("normal", fixed_count_plan, _pad, settings, per_epoch=True)


@BATCHING.register("padding_free", help="Fixed count per micro-batch, concatenated into one row.")
def padding_free(settings: BatchSettings, params: object = None) -> Strategy:
    """Fixed count per micro-batch, concatenated into one row with position_ids restarting per example."""
    return _strategy("padding_free", fixed_count_plan, _concat, settings, per_epoch=True)


@BATCHING.register("dynamic_batching", help="Padded micro-batches filled up to a padded-token budget.")
def dynamic_batching(settings: BatchSettings, params: object = None) -> Strategy:
    """Padded micro-batches filled up to micro_batch_size x cutoff_len padded tokens, similar lengths together."""
    return _strategy("dynamic_batching", padded_budget_plan, _pad, settings, per_epoch=False)


@BATCHING.register("dynamic_padding_free", help="Packed rows filled up to a real-token budget (best fit).")
def dynamic_padding_free(settings: BatchSettings, params: object = None) -> Strategy:
    """One packed row per micro-batch holding up to micro_batch_size x cutoff_len real tokens (best fit)."""
    return _strategy("dynamic_padding_free", token_budget_plan, _concat, settings, per_epoch=False)


def packed_rows(settings: BatchSettings) -> Strategy:
    """Offline-packed rows (`packing`), `micro_batch_size` rows per micro-batch, right-padded to the longest."""
    return _strategy("packed_rows", fixed_count_plan, _rows, settings, per_epoch=True)


def document_rows(settings: BatchSettings) -> Strategy:
    """Pre-training blocks (`stage: pt` with `neat_packing`): each document, ended by the separator, attends only
    to itself (`position_ids` restart after each separator; the label across a boundary is masked)."""
    return _strategy("document_rows", fixed_count_plan, _documents, settings, per_epoch=True)
