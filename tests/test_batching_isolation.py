"""Packed micro-batches on real tiny models: every packed example sees only itself (logits and gradients equal
those of the example run alone, eager and sdpa), and every strategy gives the same optimizer update."""

from __future__ import annotations

import datasets
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model
from test_batching_plans import make_cfg, skewed_dataset

from tunesmith.data.batching import build_batcher

PACKING = (
    {"batching_strategy": "padding_free"},
    {"batching_strategy": "dynamic_padding_free"},
    {"batching_strategy": "dynamic_padding_free", "attn_impl": "flash_attention_2"},  # one-row layout
    {"packing": True},
    {"neat_packing": True},
)
ATTN = ("eager", "sdpa")


def _ids(overrides: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items())


def _segments(mb: dict, row: int) -> list[tuple[int, int]]:
    """(start, end) of each sequence in a packed row, real tokens only (padding carries label -100 throughout)."""
    pos = mb["position_ids"][row].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return list(zip(starts, starts[1:], strict=False))


def _alone(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids.unsqueeze(0), use_cache=False).logits[0]


def _inputs(mb: dict) -> dict:
    return {k: v for k, v in mb.items() if k != "labels"}


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("mask_4d", [False, True])
@pytest.mark.parametrize("overrides", PACKING, ids=_ids)
def test_packed_logits_equal_each_example_alone(tokenizer, attn, mask_4d, overrides):
    model = tiny_model("qwen2", attn_implementation=attn)
    ds = skewed_dataset(24, long_len=40)
    cfg = make_cfg(
        per_device_train_batch_size=3, cutoff_len=48, create_attention_mask_in_dataloader=mask_4d, **overrides
    )
    checked = 0
    with torch.no_grad():
        for mb in build_batcher(cfg, ds, tokenizer):
            logits = model(**_inputs(mb), use_cache=False).logits
            for row in range(mb["input_ids"].size(0)):
                for a, b in _segments(mb, row):
                    if b - a > 1 or mb["labels"][row, a:b].ne(-100).any():
                        ref = _alone(model, mb["input_ids"][row, a:b])
                        assert (logits[row, a:b] - ref).abs().max() < 1e-5
                        checked += 1
    assert checked >= len(
        ds
    )  # every example was packed with others and checked (padding blocks may add some)


def _step_grads(model, batches: list[dict]) -> dict[str, torch.Tensor]:
    """Gradient of one optimizer step: token CE summed over all micro-batches, divided once by valid tokens."""
    model.zero_grad()
    valid = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in batches)
    for mb in batches:
        logits = model(**_inputs(mb), use_cache=False).logits
        ce = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), mb["labels"][:, 1:].reshape(-1), reduction="sum"
        )
        (ce / valid).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _single_grads(model, ds) -> dict[str, torch.Tensor]:
    """The same step with each example alone in its own micro-batch (no padding, nothing to leak)."""
    batches = [
        {"input_ids": torch.tensor([x]), "labels": torch.tensor([y])}
        for x, y in zip(ds["input_ids"], ds["labels"], strict=True)
    ]
    return _step_grads(model, batches)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("attn", ATTN)
def test_every_strategy_gives_the_same_gradient(tokenizer, attn):
    model = tiny_model("llama", attn_implementation=attn)
    ds = skewed_dataset(16, long_len=40)
    reference = _single_grads(model, ds)
    scale = max(float(g.abs().max()) for g in reference.values())
    settings = (
        {"batching_strategy": "normal"},
        {"batching_strategy": "normal", "create_attention_mask_in_dataloader": True},
        {"batching_strategy": "dynamic_batching"},
        *PACKING,
        {"batching_strategy": "padding_free", "create_attention_mask_in_dataloader": True},
    )
    for overrides in settings:
        batcher = build_batcher(
            make_cfg(per_device_train_batch_size=4, cutoff_len=48, **overrides), ds, tokenizer
        )
        grads = _step_grads(model, list(batcher))
        assert _max_diff(grads, reference) < 1e-5 * max(scale, 1.0), overrides


def test_left_padding_gives_the_same_gradient(tokenizer):
    tokenizer.padding_side = "left"
    model = tiny_model("qwen2", attn_implementation="sdpa")
    ds = skewed_dataset(12, long_len=40)
    batcher = build_batcher(make_cfg(per_device_train_batch_size=4, cutoff_len=48), ds, tokenizer)
    first = next(iter(batcher))
    assert (first["attention_mask"][:, 0] == 0).any()  # padding really is on the left
    assert _max_diff(_step_grads(model, list(batcher)), _single_grads(model, ds)) < 1e-5


def test_cache_on_would_leak(tokenizer):
    """The trap the batcher's format relies on the trainer avoiding: with the cache on, packed rows leak."""
    model = tiny_model("qwen2", attn_implementation="sdpa")
    ds = skewed_dataset(6, long_len=40)
    mb = next(iter(build_batcher(make_cfg(batching_strategy="padding_free", cutoff_len=48), ds, tokenizer)))
    a, b = _segments(mb, 0)[1]
    with torch.no_grad():
        leaky = model(**_inputs(mb), use_cache=True).logits[0, a:b]
        assert (leaky - _alone(model, mb["input_ids"][0, a:b])).abs().max() > 1e-3


def _pretraining_blocks(tokenizer, block: int = 40) -> datasets.Dataset:
    """Documents ended by EOS, concatenated and cut into blocks, as the pre-training pipeline makes them."""
    docs = skewed_dataset(12, long_len=30)["input_ids"]
    stream = [t for doc in docs for t in [*doc, tokenizer.eos_token_id]]
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})


@pytest.mark.parametrize("attn", ATTN)
def test_pretraining_neat_packing_isolates_documents(tokenizer, attn):
    model = tiny_model("qwen2", attn_implementation=attn)
    ds = _pretraining_blocks(tokenizer)
    neat = build_batcher(make_cfg(stage="pt", neat_packing=True, cutoff_len=40), ds, tokenizer)
    crossing = build_batcher(make_cfg(stage="pt", packing=True, cutoff_len=40), ds, tokenizer)
    mb, plain = next(iter(neat)), next(iter(crossing))
    assert "attention_mask" in plain and "position_ids" not in plain  # plain pt packing: documents may cross
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        logits = model(**_inputs(mb), use_cache=False).logits
        crossed = model(**_inputs(plain), use_cache=False).logits
        docs = 0
        for row in range(mb["input_ids"].size(0)):
            for a, b in _segments(mb, row):
                ids = mb["input_ids"][row, a:b]
                assert eos not in ids[:-1].tolist()  # a segment is one document (its EOS last)
                assert (logits[row, a:b] - _alone(model, ids)).abs().max() < 1e-5
                if a > 0:
                    docs += 1
                    assert mb["labels"][row, a] == -100  # no prediction across the boundary
        assert docs > 0
        row = next(r for r in range(plain["input_ids"].size(0)) if _segments(mb, r)[1:])
        a, b = _segments(mb, row)[1]
        assert (crossed[row, a:b] - _alone(model, mb["input_ids"][row, a:b])).abs().max() > 1e-3


def test_trainer_learns_the_same_under_normal_and_padding_free(tokenizer, tmp_path):
    """Through tunesmith's own trainer: the same examples per step give the same losses and final weights."""
    from tunesmith.train.trainer import Trainer

    ds = skewed_dataset(24, long_len=40)
    results = []
    for strategy in ("normal", "padding_free"):
        cfg = make_cfg(
            batching_strategy=strategy,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            num_train_epochs=1,
            cutoff_len=48,
            learning_rate=1e-2,
            output_dir=tmp_path / strategy,
            logging_steps=1,
            disable_tqdm=True,
        )
        model = tiny_model("qwen2", attn_implementation="sdpa")
        state = Trainer(model, cfg.train, build_batcher(cfg, ds, tokenizer)).train()
        results.append(([row["loss"] for row in state.log_history], model.state_dict()))
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert len(losses_a) == 3 and losses_a == pytest.approx(losses_b, abs=1e-5)
    assert max(float((weights_a[k] - weights_b[k]).abs().max()) for k in weights_a) < 1e-4
    assert (
        float((weights_a["lm_head.weight"] - tiny_model("qwen2").state_dict()["lm_head.weight"]).abs().max())
        > 1e-3
    )


def test_one_optimizer_step_over_the_same_examples_gives_the_same_update(tokenizer, tmp_path):
    """Through tunesmith's trainer, one SGD step over all examples (every micro-batch of the epoch accumulated):
    the parameter update is the same whichever strategy built the micro-batches."""
    from tunesmith.train.trainer import Trainer

    ds = skewed_dataset(20, long_len=40)
    start = tiny_model("llama", attn_implementation="sdpa").state_dict()
    updates = {}
    for overrides in (
        {"batching_strategy": "normal"},
        {"batching_strategy": "padding_free"},
        {"batching_strategy": "dynamic_batching"},
        {"batching_strategy": "dynamic_padding_free"},
        {"neat_packing": True},
    ):
        name = _ids(overrides)
        cfg = make_cfg(
            per_device_train_batch_size=4,
            cutoff_len=48,
            optim="sgd",
            learning_rate=1.0,
            lr_scheduler_type="constant",
            num_train_epochs=1,
            output_dir=tmp_path / name.replace("=", "_"),
            disable_tqdm=True,
            **overrides,
        )
        batcher = build_batcher(cfg, ds, tokenizer)
        cfg.train.gradient_accumulation_steps = len(batcher)  # one step over the whole epoch
        model = tiny_model("llama", attn_implementation="sdpa")
        assert Trainer(model, cfg.train, batcher).train().global_step == 1
        updates[name] = {k: v - start[k] for k, v in model.state_dict().items()}
    reference = updates.pop("batching_strategy=normal")
    assert max(float(v.abs().max()) for v in reference.values()) > 1e-3  # the step really moved the weights
    for name, update in updates.items():
        assert max(float((update[k] - reference[k]).abs().max()) for k in reference) < 1e-5, name
