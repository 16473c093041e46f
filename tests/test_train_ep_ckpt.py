"""Expert-parallel checkpoints through `tunesmith train`: a tiny Qwen3-MoE trained with ep_size=2 and FSDP2 over
2 processes, checkpointed at step 3 of 6, stores the experts in `dcp/` as one tensor of all experts (model and
optimizer state); resumed on the same layout it gives the uninterrupted run's step 4-6 losses (1e-5); resumed on 1
process (all experts in one model) it loads every expert, the optimizer state, the step and, with the same global
batch, the data position, and also continues the curve to 1e-5 (measured 1e-7)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader

sys.path.insert(0, str(Path(__file__).parent))
from test_train_distributed_ckpt import assert_resumed_exactly, train_and_resume  # noqa: E402

pytestmark = pytest.mark.dist

EP2 = ["ep_size=2", "fsdp=full_shard", "per_device_train_batch_size=2"]
EXPERTS = "model.layers.0.mlp.experts.gate_up_proj"
NUM_EXPERTS = 4  # tests/helpers.py qwen3_moe


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_and_resume(tmp_path_factory.mktemp("train_ep_ckpt"), "qwen3_moe", EP2)


def test_checkpoint_holds_all_experts(runs: dict[str, Path]) -> None:
    ckpt = runs["full"] / "checkpoint-3"
    assert (ckpt / "dcp" / ".metadata").is_file() and not (ckpt / "model.safetensors").exists()
    meta = FileSystemReader(str(ckpt / "dcp")).read_metadata().state_dict_metadata
    assert meta[f"model.{EXPERTS}"].size[0] == NUM_EXPERTS  # not one rank's block
    assert meta[f"optim.state.{EXPERTS}.exp_avg"].size[0] == NUM_EXPERTS


def test_resume_on_same_layout_is_exact(runs: dict[str, Path]) -> None:
    assert_resumed_exactly(runs, "resume2")


def test_resume_on_one_process_continues(runs: dict[str, Path]) -> None:
    assert_resumed_exactly(runs, "resume1")


def test_exports_match(runs: dict[str, Path]) -> None:
    """The final exports of the uninterrupted and the resumed 2-process runs hold the same experts, all of them."""
    full, resumed = (load_file(runs[k] / "model.safetensors") for k in ("full", "resume2"))
    experts = [k for k in full if ".mlp.experts." in k]
    assert {k.split(".")[5] for k in experts} == {str(e) for e in range(NUM_EXPERTS)}
    assert set(resumed) == set(full)
    for key in experts:
        torch.testing.assert_close(resumed[key], full[key], rtol=1e-4, atol=1e-5)
