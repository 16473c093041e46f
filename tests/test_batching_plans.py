"""Batching without a model: collation format, bin packing, exact lengths, rank split, shuffling, resume, errors."""

from __future__ import annotations

import random

import datasets
import pytest
import torch

from tunesmith.config import load_config
from tunesmith.data.batching import best_fit_decreasing, build_batcher, pack_dataset
from tunesmith.data.batching.collate import block_causal_mask, pack_row, pad_collate
from tunesmith.utils.errors import ConfigError, DataError

STRATEGIES = ("normal", "padding_free", "dynamic_batching", "dynamic_padding_free")


def make_cfg(**overrides):
    """A validated config for batching (canonical names, as users would write them)."""
    args = {"model_name_or_path": "builtin:tiny", "dataset": "demo", "batching_workers": 0, **overrides}
    return load_config(None, [f"{k}={v}" for k, v in args.items()])


def skewed_dataset(n: int = 60, seed: int = 0, long_len: int = 64) -> datasets.Dataset:
    """Mostly short examples, a few long ones; the first third of each is a masked prompt."""
    rng = random.Random(seed)
    ids, labels = [], []
    for _ in range(n):
        length = rng.randint(long_len // 2, long_len) if rng.random() < 0.1 else rng.randint(2, 12)
        row = [rng.randint(10, 200) for _ in range(length)]
        ids.append(row)
        labels.append([-100] * (length // 3) + row[length // 3 :])
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels})


def seen_examples(batcher, ds) -> list[tuple[int, ...]]:
    """The examples (as token tuples) of every micro-batch of one epoch, read back from the tensors."""
    out = []
    for mb in batcher:
        for r in range(mb["input_ids"].size(0)):
            ids = mb["input_ids"][r]
            if "position_ids" in mb:
                starts = (mb["position_ids"][r] == 0).nonzero().flatten().tolist() + [ids.numel()]
                pieces = [ids[a:b] for a, b in zip(starts, starts[1:], strict=False)]
            else:
                pieces = [ids[mb["attention_mask"][r].bool()]]
            out += [tuple(p.tolist()) for p in pieces]
    known = {tuple(x) for x in ds["input_ids"]}
    return [p for p in out if p in known]


def test_pad_collate_right_and_left():
    ex = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    right = pad_collate(ex, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = pad_collate(ex, pad_id=0, left=True)
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pack_row_masks_first_label_of_later_examples():
    row = pack_row([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3, 4, 5], "labels": [3, 4, 5]}])
    assert row["position_ids"] == [0, 1, 0, 1, 2]
    assert row["labels"] == [1, 2, -100, 4, 5]


def test_block_causal_mask_is_block_diagonal():
    mask = block_causal_mask(torch.tensor([[0, 1, 0, 1, 2]]))[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]


def test_best_fit_decreasing_fills_bins():
    rng = random.Random(1)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = best_fit_decreasing(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert max(sum(lengths[i] for i in b) for b in bins) <= 128
    lower_bound = -(-sum(lengths) // 128)
    assert len(bins) <= lower_bound * 1.05 + 1  # best-fit decreasing is near the optimum on this data
    with pytest.raises(DataError, match="row 0: 200 tokens exceed"):
        best_fit_decreasing([200], 128)


def test_pack_dataset_reports_efficiency():
    ds = skewed_dataset(80)
    lengths = [len(x) for x in ds["input_ids"]]
    packed, report = pack_dataset(ds, lengths, 64)
    assert report.rows == len(packed) and report.tokens == sum(lengths)
    assert report.efficiency > 0.9
    assert all(len(r) <= 64 for r in packed["input_ids"])
    assert sorted(map(tuple, ds["input_ids"])) == sorted(
        tuple(r[a:b])
        for r, pos in zip(packed["input_ids"], packed["position_ids"], strict=True)
        for a, b in _spans(pos)
    )


def _spans(positions: list[int]) -> list[tuple[int, int]]:
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return list(zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("world_size", [1, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_exact_length_and_rank_split(tokenizer, strategy, world_size, drop_last):
    ds = skewed_dataset()
    cfg = make_cfg(
        batching_strategy=strategy,
        per_device_train_batch_size=4,
        cutoff_len=64,
        dataloader_drop_last=drop_last,
    )
    batchers = [build_batcher(cfg, ds, tokenizer, rank=r, world_size=world_size) for r in range(world_size)]
    seen = []
    for b in batchers:
        batches = list(b)
        assert len(batches) == len(b) and len(b) > 0
        for mb in batches:
            assert mb["input_ids"].shape == mb["labels"].shape
            if strategy == "padding_free":
                assert mb["input_ids"].size(0) == 1 and "attention_mask" not in mb
                assert mb["input_ids"].numel() <= 4 * 64  # never above the token budget
            elif strategy == "dynamic_padding_free":  # dense attention: rows of at most cutoff_len
                assert mb["input_ids"].size(0) <= 4 and mb["input_ids"].size(1) <= 64
                assert "attention_mask" not in mb
            else:
                assert mb["attention_mask"].shape == mb["input_ids"].shape
                width = int(mb["attention_mask"].sum(1).max())
                assert mb["input_ids"].size(1) == width  # padded to the longest, not to cutoff_len
            if strategy == "dynamic_batching":
                assert mb["input_ids"].numel() <= 4 * 64
        seen += seen_examples(b, ds)
    everything = sorted(map(tuple, ds["input_ids"]))
    if drop_last:
        assert len(set(seen)) == len(seen)  # no example twice
    else:
        assert sorted(set(seen)) == sorted(set(everything))  # every example reached some rank


def test_dynamic_batching_beats_fixed_count_on_padding(tokenizer):
    ds = skewed_dataset(200)
    waste = {}
    for strategy in ("normal", "dynamic_batching"):
        b = build_batcher(
            make_cfg(batching_strategy=strategy, per_device_train_batch_size=4, cutoff_len=64), ds, tokenizer
        )
        masks = [mb["attention_mask"] for mb in b]
        waste[strategy] = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert waste["dynamic_batching"] < waste["normal"] / 2


def test_group_by_length_reduces_padding_and_leads_with_longest(tokenizer):
    ds = skewed_dataset(200)
    waste = {}
    for flag in (False, True):
        b = build_batcher(
            make_cfg(group_by_length=flag, per_device_train_batch_size=4, cutoff_len=64), ds, tokenizer
        )
        masks = [mb["attention_mask"] for mb in b]
        waste[flag] = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
        if flag:
            assert masks[0].size(1) == max(len(x) for x in ds["input_ids"])
    assert waste[True] < waste[False] / 2


def test_seeded_shuffling_epochs_and_disable_shuffling(tokenizer):
    ds = skewed_dataset()
    cfg = make_cfg(per_device_train_batch_size=4, seed=3)
    first = build_batcher(cfg, ds, tokenizer)
    again = build_batcher(cfg, ds, tokenizer)
    assert first.groups() == again.groups()  # same seed, same order
    epoch0 = first.groups()
    first.set_epoch(1)
    assert first.groups() != epoch0
    assert (
        build_batcher(make_cfg(per_device_train_batch_size=4, data_seed=9, seed=3), ds, tokenizer).groups()
        != epoch0
    )
    ordered = build_batcher(make_cfg(per_device_train_batch_size=4, disable_shuffling=True), ds, tokenizer)
    assert [i for g in ordered.groups() for i in g] == list(range(len(ds)))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_mid_epoch_continues_exactly(tokenizer, strategy):
    ds = skewed_dataset()
    cfg = make_cfg(
        batching_strategy=strategy, per_device_train_batch_size=4, cutoff_len=64, batching_workers=2
    )
    ref = build_batcher(cfg, ds, tokenizer)
    ref.set_epoch(1)
    full = list(ref)
    run = build_batcher(cfg, ds, tokenizer)
    run.set_epoch(1)
    it = iter(run)
    for _ in range(2):
        next(it)
    state = run.state_dict()
    assert state["position"] == 2
    fresh = build_batcher(cfg, ds, tokenizer)
    fresh.load_state_dict(state)
    fresh.set_epoch(1)  # the trainer calls set_epoch before iterating: it must not reset the position
    rest = list(fresh)
    assert len(rest) == len(full) - 2
    for a, b in zip(rest, full[2:], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    fresh.set_epoch(2)
    assert len(list(fresh)) == len(fresh)


def test_background_workers_give_the_same_batches(tokenizer):
    ds = skewed_dataset()
    plain = list(build_batcher(make_cfg(batching_strategy="padding_free"), ds, tokenizer))
    threaded = list(
        build_batcher(make_cfg(batching_strategy="padding_free", batching_workers=3), ds, tokenizer)
    )
    assert len(plain) == len(threaded)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(plain, threaded, strict=True))


def test_mask_4d_in_dataloader(tokenizer):
    ds = skewed_dataset(20)
    for strategy in ("normal", "padding_free"):
        cfg = make_cfg(batching_strategy=strategy, create_attention_mask_in_dataloader=True, cutoff_len=64)
        mb = next(iter(build_batcher(cfg, ds, tokenizer)))
        b, t = mb["input_ids"].shape
        assert mb["attention_mask"].shape == (b, 1, t, t) and mb["attention_mask"].dtype == torch.float32


def test_packing_rows_and_conflicts(tokenizer):
    ds = skewed_dataset(80)
    b = build_batcher(make_cfg(packing=True, per_device_train_batch_size=2, cutoff_len=64), ds, tokenizer)
    rows = sum(mb["input_ids"].size(0) for mb in b)
    assert rows < len(ds) / 3 and len(b) == -(-rows // 2)
    assert all("position_ids" in mb and mb["input_ids"].size(1) <= 64 for mb in b)
    with pytest.raises(ConfigError, match="batching_strategy: packing: rows are packed offline"):
        build_batcher(make_cfg(packing=True, batching_strategy="padding_free"), ds, tokenizer)


def test_too_long_example_is_a_data_error(tokenizer):
    ds = skewed_dataset(20, long_len=64)
    with pytest.raises(DataError, match=r"training data row \d+: \d+ tokens exceed cutoff_len 16"):
        build_batcher(make_cfg(batching_strategy="padding_free", cutoff_len=16), ds, tokenizer)


def test_streamed_dataset(tokenizer):
    ds = skewed_dataset(30)
    stream = ds.to_iterable_dataset()
    cfg = make_cfg(batching_strategy="padding_free", per_device_train_batch_size=4, cutoff_len=64)
    halves = [list(build_batcher(cfg, stream, tokenizer, rank=r, world_size=2)) for r in range(2)]
    assert [len(h) for h in halves] == [4, 4]
    tokens = sum(int(mb["input_ids"].numel()) for h in halves for mb in h)
    assert tokens == sum(len(x) for x in ds["input_ids"])
    with pytest.raises(ConfigError, match="streamed dataset"):
        build_batcher(make_cfg(batching_strategy="dynamic_batching"), stream, tokenizer)
    with pytest.raises(ConfigError, match="packing: offline packing needs the whole dataset"):
        build_batcher(make_cfg(packing=True), stream, tokenizer)


def test_group_by_length_reads_the_length_column(tokenizer):
    ds = skewed_dataset(40)
    fake = [100 if i == 7 else 1 for i in range(len(ds))]  # the column, not the token count, decides
    ds = ds.add_column("size", fake)
    cfg = make_cfg(group_by_length=True, length_column_name="size", per_device_train_batch_size=4)
    assert 7 in build_batcher(cfg, ds, tokenizer).groups()[0]


def test_dynamic_padding_free_one_row_with_flash_attention(tokenizer):
    """With a varlen kernel the whole real-token budget is one row; with dense attention, cutoff_len rows."""
    ds = skewed_dataset(120)
    common = {"batching_strategy": "dynamic_padding_free", "cutoff_len": 64, "per_device_train_batch_size": 4}
    dense = build_batcher(make_cfg(**common), ds, tokenizer)
    flash = build_batcher(make_cfg(**common, attn_impl="flash_attention_2"), ds, tokenizer)
    total = sum(len(x) for x in ds["input_ids"])
    rows = [mb["input_ids"] for mb in flash]
    assert all(r.size(0) == 1 and r.numel() <= 4 * 64 for r in rows)
    assert sum(r.numel() for r in rows) == total  # not one padding token
    assert sum(r.numel() for r in rows[:-1]) / (len(rows) - 1) > 0.95 * 4 * 64  # bins filled to the budget
    dense_tokens = [int(mb["input_ids"].numel()) for mb in dense]
    assert max(mb["input_ids"].size(1) for mb in dense) <= 64
    assert total / sum(dense_tokens) > 0.9 and len(dense) < len(ds) / 3
