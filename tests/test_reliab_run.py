"""Nothing lost, nothing silently wrong, through the real `tunesmith train` with real processes and signals:

one run is paused (SIGSTOP) while a second run into the same output_dir is refused with the holder's pid; the first
is then SIGKILLed, its newest checkpoint bit-flipped and a half-written line appended to its log. Resuming with
`auto` takes over the stale lock, skips the corrupt checkpoint (saying why), keeps it aside, drops the partial line
and finishes. A fresh run into that folder is refused; `overwrite_output_dir` with a typo in the dataset name
leaves everything in place; with the right name it moves the earlier run aside and trains again from scratch,
ending bit-identical to the run that resumed from the older checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import safetensors.torch
import yaml
from helpers import DEMO_DIR, save_tiny_model

from tunesmith.cli import main
from tunesmith.utils.runlock import LOCK_FILE

MAX_STEPS = 12


def _config(tmp: Path, out: Path) -> Path:
    model = tmp / "model"
    if not model.exists():
        save_tiny_model(model, attention_dropout=0.2)
    cfg = {
        "model_name_or_path": str(model),
        "dataset": "demo",
        "dataset_dir": str(DEMO_DIR),
        "cutoff_len": 48,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "max_steps": MAX_STEPS,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_steps": 3,
        "seed": 3,
        "disable_tqdm": True,
        "report_to": "none",
        "output_dir": str(out),
    }
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TUNESMITH_DATA_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}


def _train(config: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", str(config), *extra]
    return subprocess.run(cmd, env=_env(tmp), capture_output=True, text=True, timeout=300)


def _train_here(config: Path, *extra: str) -> tuple[int, str]:
    """`tunesmith train` in this process (for runs that must fail before training); exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", str(config), *extra])
    return code, err.getvalue()


def _steps(out: Path) -> list[int]:
    log = out / "trainer_log.jsonl"
    rows = []
    for line in log.read_text().splitlines() if log.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return [r["step"] for r in rows if "loss" in r]


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _flip_byte(file: Path) -> None:
    """Change one byte in the middle of `file`, keeping its size (a silent disk error)."""
    with file.open("r+b") as f:
        f.seek(file.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _paused_run(config: Path, out: Path, tmp: Path) -> subprocess.Popen:
    """A run stopped with SIGSTOP once it has written checkpoint-6 and logged step 7."""
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", str(config)]
    proc = subprocess.Popen(cmd, env=_env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((out / "checkpoint-6" / "COMPLETE").is_file() and max(_steps(out), default=0) >= 7):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGSTOP)
    return proc


def test_lock_kill_corrupt_checkpoint_partial_log_then_overwrite(tmp_path):
    out = tmp_path / "out"
    config = _config(tmp_path, out)
    first = _paused_run(config, out, tmp_path)
    try:
        code, err = _train_here(config, "resume_from_checkpoint=auto")
        assert code == 2 and f"in use by another run (pid {first.pid} on" in err and "running" in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert (out / LOCK_FILE).is_file()  # left behind by the killed run: stale
    done = [p for p in out.glob("checkpoint-*") if (p / "COMPLETE").is_file()]
    newest = max(done, key=lambda p: int(p.name.split("-")[1]))
    _flip_byte(newest / "model.safetensors")
    with (out / "trainer_log.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 1.2')  # a write cut off by the kill

    resumed = _train(config, tmp_path, "resume_from_checkpoint=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = int(newest.name.split("-")[1])
    older = out / f"checkpoint-{step - 3}"
    assert "took over the stale lock" in resumed.stderr
    assert f"skipping {newest}: model.safetensors does not match its checksum" in resumed.stderr
    assert f"resumed from {older}" in resumed.stderr
    assert "dropped 1 half-written line" in resumed.stderr
    kept = [p for p in out.glob(".previous-*/checkpoint-*")]
    assert newest.name in {p.name for p in kept}  # the corrupt checkpoint is kept aside, not deleted
    assert _steps(out) == list(range(1, MAX_STEPS + 1))
    assert not (out / LOCK_FILE).exists()

    code, err = _train_here(config)  # a fresh run into a finished run's folder
    assert code == 2 and "already holds an earlier run" in err
    code, err = _train_here(config, "overwrite_output_dir=true", "dataset=demo_typo")
    assert code == 2 and "demo_typo" in err
    assert (out / "model.safetensors").is_file() and _steps(out) == list(range(1, MAX_STEPS + 1))  # untouched

    resumed_weights, resumed_losses = safetensors.torch.load_file(out / "model.safetensors"), _losses(out)
    again = _train(config, tmp_path, "overwrite_output_dir=true")
    assert again.returncode == 0, again.stderr[-3000:]
    asides = sorted(out.glob(".previous-*"))
    assert len(asides) == 2 and (asides[-1] / "model.safetensors").is_file()
    assert (asides[-1] / "trainer_log.jsonl").is_file() and (asides[-1] / f"checkpoint-{MAX_STEPS}").is_dir()
    fresh = safetensors.torch.load_file(out / "model.safetensors")
    assert all(fresh[k].equal(v) for k, v in resumed_weights.items())  # the fallback resume was exact
    assert _losses(out) == resumed_losses


def test_full_disk_and_a_late_bad_row_name_the_intact_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    out = tmp_path / "full"
    config = _config(tmp_path, out)
    write, calls = safetensors.torch.save_file, []

    def disk_fills_up(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) > 1:
            raise OSError(28, "No space left on device", str(filename))
        return write(tensors, filename, *args, **kwargs)

    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills_up)
    code, err = _train_here(config)
    assert code == 2 and "Traceback" not in err
    assert f"cannot write {out / 'checkpoint-6.tmp' / 'model.safetensors'}: No space left on device" in err
    assert (
        f"training stopped at step 6; the last complete checkpoint, {out / 'checkpoint-3'}, is intact" in err
    )
    assert not (out / LOCK_FILE).exists()
    monkeypatch.setattr(safetensors.torch, "save_file", write)

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(30)] + [
        {"instruction": "q", "output": None}
    ]
    data = tmp_path / "stream.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    late = tmp_path / "late"
    extra = [
        "streaming=true",
        f"dataset={data}",
        "gradient_accumulation_steps=1",
        "preprocessing_batch_size=4",
        "disable_shuffling=true",  # no shuffle buffer reading ahead: the bad row is met mid-run
        f"output_dir={late}",
    ]
    code, err = _train_here(config, *extra)
    assert code == 2 and f"{data} line 31, field 'output'" in err
    assert (
        "training stopped at step 7; the last complete checkpoint" in err and "checkpoint-6, is intact" in err
    )
