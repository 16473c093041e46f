"""Sharded (FSDP2) checkpoints through `tunesmith train`: a 2-process run checkpointed at step 3 and resumed
(`resume_from_checkpoint=auto`) on 2 processes gives the uninterrupted run's step 4-6 losses exactly (fp32); resumed on
1 process with the same global batch (global_batch_size, micro batch 4 instead of 2) it loads model, optimizer,
scheduler and step from the torch distributed checkpoint and the data position maps onto the one process, so steps
4-6 are the uninterrupted run's too (tunesmith/train/checkpoint.py; the mapping both ways is unit-tested in
test_batching_reshard.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from helpers import save_tiny_model  # noqa: E402
from test_train_distributed import _launch  # noqa: E402

from tunesmith.cli import main  # noqa: E402

pytestmark = pytest.mark.dist

LOSS_TOL = 1e-5  # fp32: only the order of float sums may differ
BASE = [
    "stage=sft",
    "dataset=demo",
    "dataset_dir=builtin:demo",
    "max_steps=6",
    "save_steps=3",
    "cutoff_len=64",
    "report_to=none",
    "disable_shuffling=true",
    "logging_steps=1",
    "learning_rate=1e-3",
    "disable_tqdm=true",
    "global_batch_size=4",
]
FSDP2 = ['dist_config={"name": "fsdp2"}', "per_device_train_batch_size=2"]


def _losses(output_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and "grad_norm" in r]


def _run(launch: str, args: list[str], tmp: Path) -> None:
    errors = _launch(launch, [*BASE, *args], tmp)
    assert not errors, "\n---\n".join(e[-3000:] for e in errors)


def _resume_copy(full: Path, target: Path) -> Path:
    """`full` as it was right after checkpoint-3: later checkpoints and the log removed."""
    shutil.copytree(full, target)
    shutil.rmtree(target / "checkpoint-6")
    (target / "trainer_log.jsonl").unlink()
    return target


def train_and_resume(tmp: Path, arch: str, layout: list[str], on_one: bool = True) -> dict[str, Path]:
    """A tiny `arch` model trained 6 steps on 2 processes with `layout` (`full`, checkpoint at step 3), and copies
    of it resumed from checkpoint-3 on 2 processes (`resume2`) and, with `on_one`, on one process with the same
    global batch (`resume1`); also the `model` folder."""
    model = save_tiny_model(tmp / arch, arch)
    out = {"model": model, "full": tmp / "full"}
    _run("env", [f"model_name_or_path={model}", f"output_dir={out['full']}", *layout], tmp)
    resumes = [("resume2", "env", layout), ("resume1", "one", ["per_device_train_batch_size=4"])]
    for name, launch, args in resumes[: 2 if on_one else 1]:
        out[name] = _resume_copy(out["full"], tmp / name)
        _run(
            launch,
            [f"model_name_or_path={model}", "resume_from_checkpoint=auto", f"output_dir={out[name]}", *args],
            tmp,
        )
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_and_resume(tmp_path_factory.mktemp("train_dist_ckpt"), "llama", FSDP2)


def test_checkpoint_is_sharded(runs: dict[str, Path]) -> None:
    ckpt = runs["full"] / "checkpoint-3"
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "dcp" / ".metadata").is_file()
    assert not (ckpt / "model.safetensors").exists()
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert "dcp/.metadata" in json.loads((ckpt / "COMPLETE").read_text())["files"]


def assert_resumed_exactly(runs: dict[str, Path], name: str) -> None:
    """The resumed run `name` logs the uninterrupted run's losses of steps 4-6 (after training moved the loss)."""
    full, resumed = _losses(runs["full"]), _losses(runs[name])
    assert len(full) == 6
    assert full[3] != pytest.approx(full[0], abs=1e-3)  # training moved the loss
    assert resumed[-3:] == pytest.approx(full[3:], rel=LOSS_TOL)


def test_export_gathers_the_checkpoint_into_the_final_model(runs: dict[str, Path]) -> None:
    assert_checkpoint_exports_the_final_model(runs)


def assert_checkpoint_exports_the_final_model(runs: dict[str, Path]) -> None:
    """`tunesmith export OUTPUT_DIR/checkpoint-6` of a sharded run (gathered in one process, the base model from the
    run's folder) equals the model the run saved at its end (step 6)."""
    out = runs["full"].parent / "exported"
    assert main(["export", str(runs["full"] / "checkpoint-6"), "--output", str(out)]) == 0
    exported, final = load_file(out / "model.safetensors"), load_file(runs["full"] / "model.safetensors")
    assert exported.keys() == final.keys()
    assert all(torch.equal(exported[k], final[k]) for k in final)
    assert (out / "tokenizer_config.json").is_file()


def test_resume_on_two_processes_is_exact(runs: dict[str, Path]) -> None:
    assert_resumed_exactly(runs, "resume2")


def test_resume_on_one_process_is_exact(runs: dict[str, Path]) -> None:
    full, resumed = _losses(runs["full"]), _losses(runs["resume1"])
    assert len(resumed) == 3
    assert resumed == pytest.approx(full[3:], rel=LOSS_TOL)
