"""A SIGKILLed DPO run (shuffled pairs, gradient accumulation, reference copy) resumed with
`resume_from_checkpoint: auto` ends bit-identical to the uninterrupted run, with the same per-step losses and
rewards."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
import yaml
from helpers import save_tiny_model, write_jsonl
from test_ckpt_resume import _interrupt, _logged_steps, _train, _weights
from test_pref_trl_parity import pairs

MAX_STEPS = 8


def config(tmp: Path, out: Path) -> Path:
    if not (tmp / "model").exists():
        save_tiny_model(tmp / "model")
        write_jsonl(tmp / "pairs.jsonl", pairs() * 2)
    cfg = {
        "model_name_or_path": str(tmp / "model"),
        "stage": "dpo",
        "dataset": str(tmp / "pairs.jsonl"),
        "cutoff_len": 128,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "max_steps": MAX_STEPS,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_steps": 2,
        "seed": 11,
        "disable_tqdm": True,
        "report_to": "none",
        "output_dir": str(out),
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def rewards(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["rewards/margins"] for r in rows if "rewards/margins" in r}


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    done = _train(config(tmp_path, full), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "killed"
    cfg = config(tmp_path, out)
    status, _ = _interrupt(cfg, out, tmp_path, random.Random().randint(3, MAX_STEPS - 3), signal.SIGKILL)
    assert status == -signal.SIGKILL and max(_logged_steps(out)) < MAX_STEPS
    resumed = _train(cfg, tmp_path, "resume_from_checkpoint=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    want, got = _weights(full), _weights(out)
    assert got.keys() == want.keys()
    assert all(got[name].equal(tensor) for name, tensor in want.items())  # bit-identical
    assert _logged_steps(out) == _logged_steps(full)
    assert rewards(out) == rewards(full) and len(rewards(full)) == MAX_STEPS
    assert pytest.approx(0) != rewards(full)[MAX_STEPS]
