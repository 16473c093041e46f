"""Exact resume through `tunesmith train`: a run killed (SIGKILL, or SIGTERM which saves first) mid-epoch with
gradient accumulation, shuffling and dropout on, resumed with `resume_from_checkpoint: auto`, ends with weights
bit-identical to the uninterrupted run and logs the same per-step losses."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import yaml
from helpers import DEMO_DIR, save_tiny_model
from test_train_distributed import _run_here

MAX_STEPS = 20


def _config(tmp: Path, out: Path, **extra: object) -> Path:
    model = tmp / "model"
    if not model.exists():
        save_tiny_model(model, attention_dropout=0.2)  # dropout draws random numbers every step
    cfg = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "dataset": "demo",
        "dataset_dir": str(DEMO_DIR),
        "cutoff_len": 64,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 3,
        "max_steps": MAX_STEPS,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_steps": 3,
        "seed": 7,
        "disable_tqdm": True,
        "report_to": "none",
        "output_dir": str(out),
        **extra,
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TUNESMITH_DATA_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}


def _train(config: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", str(config), *extra]
    return subprocess.run(cmd, env=_env(tmp), capture_output=True, text=True, timeout=300)


def _logged_steps(out: Path) -> dict[int, float]:
    log = out / "trainer_log.jsonl"
    if not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), "a step was logged twice (the log was not cut back on resume)"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _interrupt(config: Path, out: Path, tmp: Path, at_step: int, sig: int) -> tuple[int, str]:
    """Start training and send `sig` once step `at_step` is logged; returns the exit status and stderr."""
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", str(config)]
    proc = subprocess.Popen(cmd, env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while max(_logged_steps(out), default=0) < at_step:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def _weights(out: Path) -> dict:
    return safetensors.torch.load_file(out / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: final weights and per-step losses."""
    tmp = tmp_path_factory.mktemp("resume")
    out = tmp / "full"
    done = _train(_config(tmp, out), tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, _weights(out), _logged_steps(out)


def _assert_same_run(out: Path, reference_weights: dict, reference_losses: dict[int, float]) -> None:
    weights = _weights(out)
    assert weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert weights[name].equal(tensor), name  # bit-identical
    assert _logged_steps(out) == reference_losses  # every step once, exactly the same loss


@pytest.mark.parametrize("save_async", [False, True])
def test_sigkill_at_random_step_then_auto_resume_is_bit_identical(reference, save_async):
    tmp, ref_weights, ref_losses = reference
    assert sorted(ref_losses) == list(range(1, MAX_STEPS + 1))
    out = tmp / f"killed_async_{save_async}"
    config = _config(tmp, out, save_async=save_async)
    at_step = random.Random().randint(4, MAX_STEPS - 6)
    status, _ = _interrupt(config, out, tmp, at_step, signal.SIGKILL)
    assert status == -signal.SIGKILL
    killed_at = max(_logged_steps(out))
    assert killed_at < MAX_STEPS and not (out / "model.safetensors").exists(), (
        f"not killed mid-run ({at_step})"
    )
    again = _run_here([str(config)], _env(tmp))  # a fresh start into a folder with checkpoints is refused
    assert again and "resume_from_checkpoint" in again[0]
    resumed = _train(config, tmp, "resume_from_checkpoint=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _assert_same_run(out, ref_weights, ref_losses)


def test_sigterm_saves_at_the_step_and_says_how_to_resume(reference):
    tmp, ref_weights, ref_losses = reference
    out = tmp / "terminated"
    config = _config(tmp, out)
    status, stderr = _interrupt(config, out, tmp, 5, signal.SIGTERM)
    step = max(_logged_steps(out))
    assert status == 2 and "stopped by SIGTERM" in stderr and "resume_from_checkpoint: auto" in stderr
    assert (
        out / f"checkpoint-{step}" / "COMPLETE"
    ).is_file()  # saved at the step it stopped, not the last save
    resumed = _train(config, tmp, "resume_from_checkpoint=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / f'checkpoint-{step}'}" in resumed.stderr
    _assert_same_run(out, ref_weights, ref_losses)
