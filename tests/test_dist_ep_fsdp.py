"""ep_fsdp_size: expert parallel (ep_size 2) with every expert block FSDP-sharded over the 2 ranks holding it, on
4 real processes, matches 1 process (SGD and AdamW losses, gradient norm); its sharded checkpoint resumes exactly on
the same layout and loads on 1 process with all experts. Also: expert parallel under DDP (replicated expert blocks,
no DTensor parameter) checkpoints through DCP and resumes exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from dist_utils import SCRIPTS, read_json, run_script

from tunesmith.dist.checkpoint_io import load_sharded
from tunesmith.dist.mesh import parallel_sizes
from tunesmith.utils.errors import ConfigError

pytestmark = pytest.mark.dist


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ep_fsdp")
    run_script("run_ep_fsdp.py", str(work), nproc=4)
    return work


def test_experts_are_sharded_twice(work: Path) -> None:
    results = read_json(work / "ep_fsdp.json")
    assert results["expert_is_dtensor"]
    assert results["expert_local_shape"][0] == 1  # 4 experts / ep 2 / ep_fsdp 2


def test_losses_match_one_process(work: Path) -> None:
    results = read_json(work / "ep_fsdp.json")
    assert results["sgd_loss"] < 1e-5  # SGD: a wrongly scaled expert gradient moves the curve
    assert results["adamw_loss"] < 1e-5
    assert results["grad_norm"] < 1e-5  # gradient clipping sums the expert shares over ep and ep_fsdp


def test_checkpoint_resumes_on_same_layout(work: Path) -> None:
    assert read_json(work / "ep_fsdp.json")["resume_loss"] < 1e-6


def test_ddp_expert_parallel_checkpoints_with_dcp(work: Path) -> None:
    results = read_json(work / "ep_fsdp.json")
    assert results["ddp_is_sharded"]  # no DTensor parameter, yet each rank holds other experts
    assert results["ddp_resume_loss"] < 1e-6


def test_checkpoint_loads_on_one_process(work: Path) -> None:
    sys.path.insert(0, str(SCRIPTS))
    from common import tiny_model

    model = tiny_model("qwen3_moe")
    load_sharded(work / "dcp", model)
    full = torch.load(work / "full.pt", weights_only=True)
    state = model.state_dict()
    assert set(full) == set(state)
    for name, tensor in full.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize(("world", "ep", "ep_fsdp"), [(4, 2, 3), (4, 1, 2), (8, 2, 3)])
def test_ep_fsdp_size_must_divide_the_expert_holders(world: int, ep: int, ep_fsdp: int) -> None:
    with pytest.raises(ConfigError, match="ep_fsdp_size"):
        parallel_sizes(world, ep_size=ep, ep_fsdp_size=ep_fsdp)


def test_ep_fsdp_size_may_leave_replicas() -> None:
    sizes = parallel_sizes(8, ep_size=2, ep_fsdp_size=2)  # 4 holders of each block: 2 shards x 2 replicas
    assert (sizes.ep, sizes.ep_fsdp) == (2, 2)
