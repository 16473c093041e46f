"""`parallelize(model, cfg)` driven by real configs on 2 processes matches 1 process: fsdp2 + LoRA + activation
checkpointing, Ulysses cp_size 2 under DDP, ep_size 2 under fsdp2 (SGD, so gradient scale errors show)."""

from __future__ import annotations

import pytest
from dist_utils import read_json, run_script

pytestmark = pytest.mark.dist


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("parallelize")
    run_script("run_parallelize.py", str(work), nproc=2)
    return read_json(work / "parallelize.json")


def test_fsdp2_lora_recompute(results):
    info = results["fsdp2_lora_recompute_info"]
    assert info["wrapper"].startswith("FSDP") and info["lora"] and info["checkpointed"]
    assert info["fsdp_units"] >= 4  # 2 layers + embed_tokens + lm_head (+ root)
    assert results["fsdp2_lora_recompute"] < 1e-5


def test_ddp_context_parallel(results):
    assert results["ddp_cp2_info"]["wrapper"] == "DistributedDataParallel"
    assert results["ddp_cp2"] < 1e-5


def test_fsdp2_expert_parallel(results):
    assert results["fsdp2_ep2_info"]["local_experts"] == 2
    assert results["fsdp2_ep2"] < 1e-5


def test_fsdp2_dcp_path_loads_the_sharded_weights(results):
    # the model starts from other random weights; dcp_path must replace them with the checkpoint's
    assert results["fsdp2_dcp_path"] < 1e-5
