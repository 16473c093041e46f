"""End to end: a real training run reports to trainer_log.jsonl and TensorBoard alike and ends with its plots."""

from __future__ import annotations

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe

SECRET = "swl-e2e-SECRET-93kd"


def test_recipe_reports_to_tensorboard_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            "model_name_or_path=builtin:tiny",
            "dataset=demo",
            "dataset_dir=builtin:demo",
            "cutoff_len=32",
            "per_device_train_batch_size=4",
            "max_steps=6",
            "learning_rate=3e-3",
            "logging_steps=2",
            "logging_first_step=true",
            "disable_tqdm=true",
            "report_to=tensorboard",
            f"logging_dir={tmp_path / 'tb'}",
            f"swanlab_token={SECRET}",
            f"output_dir={out}",
        ],
    )
    run_recipe(cfg)
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    assert [s for s, _ in logged] == [1, 2, 4, 6]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in scalars] == [1, 2, 4, 6]
    assert all(abs(a - b) < 1e-5 * abs(b) for (_, a), (_, b) in zip(scalars, logged, strict=True))
    assert (out / "training_loss.png").exists() and (out / "training_lr.png").exists()
    written = [p for p in [*out.rglob("*"), *(tmp_path / "tb").rglob("*")] if p.is_file()]
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []
