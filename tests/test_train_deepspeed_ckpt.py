"""DeepSpeed checkpoints through `tunesmith train`: a 2-process ZeRO-3 run (the shipped JSON) checkpointed at step 3
holds the engine's partitions; resumed (`resume_from_checkpoint=auto`) on 2 processes it gives the uninterrupted
run's step 4-6 losses; resuming it without DeepSpeed or on another number of processes is a clear error;
`tunesmith export` gathers a checkpoint's partitions into the model the run saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from test_train_distributed import _launch  # noqa: E402
from test_train_distributed_ckpt import (  # noqa: E402
    BASE,
    _losses,
    _resume_copy,
    assert_checkpoint_exports_the_final_model,
    assert_resumed_exactly,
    train_and_resume,
)

from tunesmith.infer.export import load_sharded_checkpoint  # noqa: E402
from tunesmith.utils.errors import ConfigError  # noqa: E402

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


def test_export_gathers_the_zero3_partitions_into_the_final_model(runs: dict[str, Path]) -> None:
    assert_checkpoint_exports_the_final_model(runs)


def test_a_checkpoint_file_holding_other_objects_is_refused_before_deepspeed_reads_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "latest").write_text("state")
    torch.save({"module": argparse.Namespace(x=1)}, tmp_path / "state" / "mp_rank_00_model_states.pt")
    with pytest.raises(
        ConfigError, match=r"mp_rank_00_model_states.pt: not a plain DeepSpeed checkpoint file"
    ):
        load_sharded_checkpoint(tmp_path, nn.Linear(2, 2))


def test_an_adapter_runs_checkpoint_points_to_the_adapter(tmp_path: Path, monkeypatch) -> None:
    import deepspeed.utils.zero_to_fp32 as zero_to_fp32

    (tmp_path / "state").mkdir()
    (tmp_path / "latest").write_text("state")
    torch.save({"module": {}}, tmp_path / "state" / "mp_rank_00_model_states.pt")
    peft_state = {"base_model.model.weight": torch.zeros(2, 2), "base_model.model.bias": torch.zeros(2)}
    monkeypatch.setattr(zero_to_fp32, "get_fp32_state_dict_from_zero_checkpoint", lambda *a, **k: peft_state)
    with pytest.raises(ConfigError, match="of an adapter .peft. run; export the adapter the run saved"):
        load_sharded_checkpoint(tmp_path, nn.Linear(2, 2))
