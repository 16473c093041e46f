"""End to end in one process: `run_recipe` on the built-in tiny model and demo data trains, logs and saves."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe


@pytest.mark.parametrize("stage", ["sft", "pt"])
def test_recipe_trains_and_saves(tmp_path, monkeypatch, stage):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    overrides = [
        "model_name_or_path=builtin:tiny",
        f"dataset={'demo' if stage == 'sft' else 'demo_pt'}",
        "dataset_dir=builtin:demo",
        f"stage={stage}",
        "cutoff_len=64",
        "per_device_train_batch_size=8",
        "gradient_accumulation_steps=2",
        "max_steps=12",
        "learning_rate=3e-3",
        "logging_steps=1",
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
    ]
    cfg = load_config(None, overrides)
    run_recipe(cfg)
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert steps[-1]["loss"] < 0.8 * steps[0]["loss"]
    assert (out / "tunesmith_config.yaml").exists()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_per_token_loss_unless_explicitly_turned_off():
    from tunesmith.recipes.common import per_token_loss

    def cfg(*overrides: str):
        return load_config(None, ["model_name_or_path=builtin:tiny", *overrides], validate=False)

    assert per_token_loss(cfg())
    assert per_token_loss(cfg("calculate_per_token_loss=true"))
    assert not per_token_loss(cfg("calculate_per_token_loss=false"))
