"""DPO on two processes equals one process with the same global batch of pairs: DDP with gradient accumulation,
FSDP2 and DeepSpeed ZeRO-3 (the reference replicated on every rank) give the 1-process per-step loss, gradient
norm and rewards (one launch per layout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dist_utils import dist_env, free_port
from helpers import save_tiny_model, write_jsonl
from test_pref_trl_parity import pairs
from test_train_distributed import _run_here

pytestmark = pytest.mark.dist
DS = Path(__file__).parents[1] / "examples" / "deepspeed"
KEYS = ("loss", "grad_norm", "rewards/chosen", "rewards/margins", "logps/rejected")
LAYOUTS = {  # every layout: 4 pairs per optimizer step
    "ddp": ["per_device_train_batch_size=1", "gradient_accumulation_steps=2"],
    "fsdp2": ["per_device_train_batch_size=2", 'dist_config={"name": "fsdp2"}'],
    "zero3": ["per_device_train_batch_size=2", f"deepspeed={DS / 'ds_z3.json'}"],
}


def base_args(tmp: Path) -> list[str]:
    return [
        f"model_name_or_path={tmp / 'model'}",
        f"dataset={tmp / 'pairs.jsonl'}",
        "cutoff_len=128",
        "max_steps=3",
        "logging_steps=1",
        "learning_rate=1e-3",
        "disable_shuffling=true",
        "report_to=none",
        "save_strategy=no",
        "disable_tqdm=true",
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pref_dist")
    save_tiny_model(tmp / "model", "llama")
    write_jsonl(tmp / "pairs.jsonl", pairs())
    env = dist_env(TUNESMITH_DATA_CACHE=str(tmp / "cache"))
    single = [*base_args(tmp), "stage=dpo", "per_device_train_batch_size=4", f"output_dir={tmp / 'single'}"]
    assert not _run_here(single, env)
    for name, args in LAYOUTS.items():
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr"]
        cmd += ["127.0.0.1", "--master_port", str(free_port()), "-m", "tunesmith.cli", "dpo", *base_args(tmp)]
        cmd += [*args, f"output_dir={tmp / name}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-6000:]
    return tmp


def log(out: Path) -> list[dict]:
    return [
        json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in line
    ]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_two_processes_match_one(runs, name):
    want, got = log(runs / "single"), log(runs / name)
    assert len(want) == len(got) == 3
    assert want[0]["loss"] != pytest.approx(want[2]["loss"], abs=1e-3)  # training moved the loss
    for mine, ref in zip(got, want, strict=True):
        for key in KEYS:
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
