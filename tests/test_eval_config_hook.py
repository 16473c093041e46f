"""`compute_metrics: module:function` in the config reaches evaluation during `tunesmith train`."""

from __future__ import annotations

import json

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe

HOOK = """
def supervised_tokens(pred, compute_result=True):
    return {"supervised_tokens": float((pred.label_ids != -100).sum())}
"""


def test_compute_metrics_from_config(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            "model=builtin:tiny",
            "dataset=demo",
            "dataset_dir=builtin:demo",
            "cutoff_len=64",
            "per_device_train_batch_size=4",
            "max_steps=2",
            "val_size=8",
            "eval_strategy=steps",
            "eval_steps=2",
            "save_strategy=no",
            "compute_metrics=my_metrics:supervised_tokens",
            "disable_tqdm=true",
            "report_to=none",
            f"output_dir={out}",
        ],
    )
    run_recipe(cfg)
    evals = [
        r for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines()) if "eval_loss" in r
    ]
    assert evals and evals[-1]["eval_supervised_tokens"] > 0
