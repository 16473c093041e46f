"""Micro-batches of preference data: both answers of a pair in the same micro-batch.

A micro-batch of P pairs holds 2P sequences, the P chosen ones first, then the P rejected ones in the same order,
as `normal` padded rows or, with `batching_strategy: padding_free`, packed into one row whose `position_ids`
restart per sequence (attention stays inside each sequence). `sequence_ids` (B, T) names the sequence of every
position (-1 on padding), so losses sum log-probabilities per sequence in either layout. KTO examples (one
sequence each, `kto_tag`) use the same layout with `pairs=False`. Precomputed reference log-probabilities travel
as per-pair (per-example) float tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import datasets
import pyarrow.compute as pc
import torch
from transformers import PreTrainedTokenizerBase

from tunesmith.data.batching.base import Batcher, Strategy
from tunesmith.data.batching.builder import _fetcher, batch_settings, batch_workers
from tunesmith.data.batching.collate import IGNORE_INDEX, pack_row, packed_collate, pad_collate
from tunesmith.data.batching.strategies import BatchSettings, fixed_count_plan
from tunesmith.utils.errors import ConfigError

Batch = dict[str, torch.Tensor]
SEQUENCE_KEYS = ("input_ids", "labels")
PAIR_KEYS = (*SEQUENCE_KEYS, "rejected_input_ids", "rejected_labels")
EXTRA_KEYS = ("ref_chosen_logps", "ref_rejected_logps", "kto_tag")
STRATEGIES = ("normal", "padding_free")


def sequences(rows: Sequence[dict[str, Any]], pairs: bool) -> list[dict[str, list[int]]]:
    """The sequences of a micro-batch: chosen ones, then rejected ones (pairs); else the examples."""
    chosen = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    if not pairs:
        return chosen
    return chosen + [{"input_ids": r["rejected_input_ids"], "labels": r["rejected_labels"]} for r in rows]


def sequence_ids(lengths: Sequence[int], width: int, packed: bool, left: bool = False) -> torch.Tensor:
    """(rows, width) sequence index of every position, -1 on padding."""
    if packed:
        ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
        return torch.nn.functional.pad(ids, (0, width - ids.numel()), value=-1).unsqueeze(0)
    out = torch.full((len(lengths), width), -1, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            out[i, width - n :] = i
        else:
            out[i, :n] = i
    return out


def collate_preference(
    rows: list[dict[str, Any]], s: BatchSettings, *, packed: bool, pairs: bool = True
) -> Batch:
    """One micro-batch of `rows` (pairs or KTO examples), padded or packed, with `sequence_ids`."""
    seqs = sequences(rows, pairs)
    if packed:
        batch = packed_collate([pack_row(seqs)], s.pad_id, mask_4d=s.mask_4d)
    else:
        batch = pad_collate(seqs, s.pad_id, left=s.left_padding, mask_4d=s.mask_4d, label_pad_id=-100)
    lengths = [len(q["input_ids"]) for q in seqs]
    batch["sequence_ids"] = sequence_ids(lengths, batch["input_ids"].size(1), packed, s.left_padding)
    for key in EXTRA_KEYS:
        if key in rows[0]:
            batch[key] = torch.tensor([r[key] for r in rows])
    if "kto_tag" in rows[0]:  # KTO's mismatched (prompt, completion) sequences, a micro-batch of their own
        kl_batch = collate_preference(mismatched(rows, s.cutoff_len), s, packed=packed, pairs=False)
        batch.update({f"kl_{k}": v for k, v in kl_batch.items()})
    return batch


def mismatched(rows: Sequence[dict[str, Any]], cutoff_len: int) -> list[dict[str, list[int]]]:
    """KTO's KL sequences: example i's prompt before example i-1's completion (the completions rotated by one
    within the micro-batch, as TRL does within each batch), cut at `cutoff_len`."""
    split = [_prompt_length(r["labels"]) for r in rows]
    out = []
    for i, row in enumerate(rows):
        other, cut = rows[i - 1], split[i - 1]
        ids = (row["input_ids"][: split[i]] + other["input_ids"][cut:])[:cutoff_len]
        labels = ([IGNORE_INDEX] * split[i] + other["labels"][cut:])[:cutoff_len]
        out.append({"input_ids": ids, "labels": labels})
    return out


def _prompt_length(labels: Sequence[int]) -> int:
    """Leading unsupervised positions (the prompt) of a processed example."""
    return next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))


def build_preference_batcher(
    cfg: Any,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    rank: int = 0,
    world_size: int = 1,
    pairs: bool = True,
) -> Batcher:
    """This rank's batcher over processed pairs (or KTO examples): `per_device_train_batch_size` of them per
    micro-batch, shuffled as the SFT batcher shuffles."""
    train = cfg.train
    name = train.batching_strategy
    if name not in STRATEGIES or cfg.data.packing:
        raise ConfigError(
            f"batching_strategy: preference stages batch pairs as {' or '.join(STRATEGIES)} (packing off); "
            f"got {'packing' if cfg.data.packing else name!r}"
        )
    if isinstance(dataset, datasets.IterableDataset):
        raise ConfigError("streaming: the preference stages need a map-style dataset; set streaming: false")
    settings = batch_settings(cfg, tokenizer)
    packed = name == "padding_free"
    strategy = Strategy(
        f"pairs_{name}",
        functools.partial(fixed_count_plan, s=settings),
        functools.partial(collate_preference, s=settings, packed=packed, pairs=pairs),
        per_epoch=True,
        layout=f"pairs_{name}:cutoff_len={settings.cutoff_len}",
        rows=settings.micro_batch_size,
    )
    keys = [k for k in (*PAIR_KEYS, *EXTRA_KEYS) if k in dataset.column_names]
    seed = train.data_seed if train.data_seed is not None else train.seed
    return Batcher(
        _fetcher(dataset.select_columns(keys)),
        _lengths(dataset, pairs),
        strategy,
        seed=seed,
        shuffle=not train.disable_shuffling,
        drop_last=train.dataloader_drop_last,
        rank=rank,
        world_size=world_size,
        workers=batch_workers(train),
    )


def _lengths(dataset: datasets.Dataset, pairs: bool) -> list[int]:
    table = dataset.select_columns(["input_ids", *(["rejected_input_ids"] if pairs else [])]).with_format(
        "arrow"
    )[:]
    chosen = pc.list_value_length(table.column("input_ids"))
    if not pairs:
        return chosen.to_pylist()
    return pc.add(chosen, pc.list_value_length(table.column("rejected_input_ids"))).to_pylist()
