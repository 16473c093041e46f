"""Parity with transformers.Trainer (5.23): same weights, same processed examples, sequential batches.

Per-step loss, grad_norm and learning rate must match within 1e-4 relative, for full fine-tuning and LoRA,
gradient accumulation 1 and 4 with uneven label-token counts per micro-batch, and each scheduler.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers import REFERENCE_ARGS, tiny_model, tiny_tokenizer
from transformers import Trainer as HFTrainer
from transformers import TrainingArguments as HFArgs

from tunesmith.config import load_config
from tunesmith.train.trainer import Trainer

MICRO = 2
STEPS = 5


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> list[dict[str, list[int]]]:
    """Processed demo SFT examples written by `tunesmith data --export` and read back from its JSON Lines."""
    from tunesmith.data.export import export_processed
    from tunesmith.model import load_tokenizer

    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_DATA_CACHE", str(tmp / "cache"))
        overrides = [
            "model_name_or_path=builtin:tiny",
            "dataset=demo",
            "dataset_dir=builtin:demo",
            "cutoff_len=128",
        ]
        cfg = load_config(None, overrides, validate=False)
        export_processed(cfg, load_tokenizer(cfg), tmp / "train.jsonl", limit=STEPS * 4 * MICRO)
    rows = [json.loads(line) for line in (tmp / "train.jsonl").read_text().splitlines()]
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]


def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row: pad id / -100 / attention 0."""
    pad = tiny_tokenizer().pad_token_id
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": [], "labels": [], "attention_mask": []}
    for r in rows:
        gap = width - len(r["input_ids"])
        out["input_ids"].append(r["input_ids"] + [pad] * gap)
        out["labels"].append(r["labels"] + [-100] * gap)
        out["attention_mask"].append([1] * len(r["input_ids"]) + [0] * gap)
    return {k: torch.tensor(v) for k, v in out.items()}


def lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    for (
        name,
        p,
    ) in peft_model.named_parameters():  # B starts at zero; make it non-zero so LoRA grads are general
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return peft_model


def run_hf(model, rows, tmp_path, ga: int, schedule: str, kwargs: dict, **extra) -> list[dict]:
    args = HFArgs(
        output_dir=str(tmp_path / "hf"),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ga,
        max_steps=STEPS,
        learning_rate=1e-3,
        weight_decay=0.1,
        max_grad_norm=1.0,
        lr_scheduler_type=schedule,
        lr_scheduler_kwargs=kwargs,
        warmup_steps=2,
        **REFERENCE_ARGS,
        disable_tqdm=True,
        seed=0,
        **extra,
    )
    trainer = HFTrainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


def run_ours(
    model, rows, tmp_path, ga: int, schedule: str, kwargs: dict, min_lr: float | None, **extra
) -> list[dict]:
    overrides = [
        f"output_dir={tmp_path / 'ours'}",
        f"gradient_accumulation_steps={ga}",
        f"max_steps={STEPS}",
        "learning_rate=1e-3",
        "weight_decay=0.1",
        "max_grad_norm=1.0",
        f"lr_scheduler_type={schedule}",
        "warmup_steps=2",
        "logging_steps=1",
        "disable_tqdm=true",
        "seed=0",
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    cfg = load_config(None, overrides, validate=False)
    cfg.train.lr_scheduler_kwargs = dict(kwargs)
    cfg.train.learning_rate_end = min_lr
    batches = [collate(rows[i : i + MICRO]) for i in range(0, len(rows), MICRO)]
    trainer = Trainer(model, cfg.train, batches)
    state = trainer.train()
    trainer.close()
    return state.log_history, model


CASES = [
    ("full", 1, "linear", {}, None),
    ("full", 4, "linear", {}, None),
    ("full", 4, "cosine", {}, None),
    ("full", 4, "cosine_with_restarts", {"num_cycles": 2}, None),
    ("full", 4, "polynomial", {"power": 2.0, "lr_end": 1e-4}, None),
    ("full", 4, "constant", {}, None),
    ("full", 4, "constant_with_warmup", {}, None),
    ("full", 4, "inverse_sqrt", {}, None),
    ("full", 4, "cosine_with_min_lr", {"min_lr": 1e-4}, None),
    ("lora", 1, "cosine", {}, None),
    ("lora", 4, "linear", {}, None),
]


@pytest.mark.parametrize(("kind", "ga", "schedule", "kwargs", "min_lr"), CASES)
def test_matches_transformers_trainer(tmp_path, exported, kind, ga, schedule, kwargs, min_lr):
    rows = exported[: STEPS * ga * MICRO]
    tokens = [
        int((collate(rows[i : i + MICRO])["labels"][:, 1:] != -100).sum()) for i in range(0, len(rows), MICRO)
    ]
    assert (
        len(set(tokens)) > 1
    )  # micro-batches differ in label-token count: per-micro-batch means would differ
    base = tiny_model("qwen2")
    if kind == "lora":
        base = lora(base)
    theirs = run_hf(copy.deepcopy(base), rows, tmp_path, ga, schedule, kwargs)
    ours, trained = run_ours(copy.deepcopy(base), rows, tmp_path, ga, schedule, kwargs, min_lr)
    assert len(ours) == len(theirs) == STEPS
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert mine["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)
        assert mine["lr"] == pytest.approx(ref["learning_rate"], rel=1e-6, abs=1e-12)
    before = dict(base.named_parameters())
    changed = [n for n, p in trained.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed  # the weights did move


def test_label_smoothing_matches_transformers_trainer(tmp_path, exported):
    rows = exported[: STEPS * 4 * MICRO]
    base = tiny_model("qwen2")
    theirs = run_hf(copy.deepcopy(base), rows, tmp_path, 4, "linear", {}, label_smoothing_factor=0.2)
    ours, _ = run_ours(copy.deepcopy(base), rows, tmp_path, 4, "linear", {}, None, label_smoothing_factor=0.2)
    plain, _ = run_ours(copy.deepcopy(base), rows, tmp_path / "plain", 4, "linear", {}, None)
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert mine["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)
    assert all(abs(a["loss"] - b["loss"]) > 1e-4 for a, b in zip(ours, plain, strict=True))  # smoothing acts


def test_moe_aux_loss_matches_transformers_trainer(tmp_path, exported):
    """Qwen3-MoE with the router load-balancing loss (coefficient from the model config), accumulation 1."""
    rows = exported[: STEPS * MICRO]
    base = tiny_model("qwen3_moe", output_router_logits=True, router_aux_loss_coef=0.05)
    theirs = run_hf(copy.deepcopy(base), rows, tmp_path, 1, "linear", {})
    ours, _ = run_ours(copy.deepcopy(base), rows, tmp_path, 1, "linear", {}, None)
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert mine["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)
