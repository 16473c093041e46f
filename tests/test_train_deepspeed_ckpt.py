"""DeepSpeed checkpoints through `tunesmith train`: a 2-process ZeRO-3 run (the shipped JSON) checkpointed at step 3
holds the engine's partitions; resumed (`resume_from_checkpoint=auto`) on 2 processes it gives the uninterrupted
run's step 4-6 losses; resuming it without DeepSpeed or on another number of processes is a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_train_distributed import _launch  # noqa: E402
from test_train_distributed_ckpt import BASE, _losses, _resume_copy, assert_resumed_exactly, train_and_resume  # noqa: E402

pytestmark = pytest.mark.dist

ZERO3 = [
    f"deepspeed={Path(__file__).parents[1] / 'examples' / 'deepspeed' / 'ds_z3.json'}",
    "per_device_train_batch_size=2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("train_ds_ckpt")
    return {**train_and_resume(tmp, "llama", ZERO3, on_one=False), "tmp": tmp}


def test_checkpoint_holds_the_engine_partitions(runs: dict[str, Path]) -> None:
    ckpt = runs["full"] / "checkpoint-3"
    assert (ckpt / "COMPLETE").is_file()
    partitions = sorted(p.name for p in (ckpt / "deepspeed" / "state").glob("*optim_states.pt"))
    assert len(partitions) == 2  # one ZeRO partition of the optimizer state per process
    assert not (ckpt / "model.safetensors").exists() and not (ckpt / "optimizer.pt").exists()


def test_resume_continues_the_loss_curve(runs: dict[str, Path]) -> None:
    assert len(_losses(runs["resume2"])) == 3  # the copy's log was removed with the later checkpoint
    assert_resumed_exactly(runs, "resume2")


def test_resume_without_deepspeed_is_a_clear_error(runs: dict[str, Path]) -> None:
    target = _resume_copy(runs["full"], runs["tmp"] / "plain")
    args = [
        *BASE,
        f"model_name_or_path={runs['model']}",
        "resume_from_checkpoint=auto",
        f"output_dir={target}",
    ]
    errors = _launch("one", [*args, "per_device_train_batch_size=4"], runs["tmp"])
    assert errors and "was saved by a DeepSpeed run" in errors[0]
