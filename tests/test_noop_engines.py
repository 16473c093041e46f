"""`dist_config` / HF `fsdp` / `deepspeed` without torchrun run their engine on one process (they used to be
ignored): the checkpoints have the engine's layout and the losses match a plain run. A missing DeepSpeed JSON is
an error before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.infer.export import load_sharded_checkpoint
from tunesmith.recipes import run_recipe
from tunesmith.utils.errors import ConfigError

EXAMPLES = Path(__file__).parents[1] / "examples" / "deepspeed"
BASE = [
    "model_name_or_path=builtin:tiny",
    "dataset=demo",
    "dataset_dir=builtin:demo",
    "cutoff_len=64",
    "per_device_train_batch_size=4",
    "max_steps=3",
    "save_steps=3",
    "logging_steps=1",
    "learning_rate=1e-3",
    "disable_tqdm=true",
    "batching_workers=0",
]


def losses(out: Path) -> list[float]:
    return [
        r["loss"]
        for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines())
        if "loss" in r
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_DATA_CACHE", str(root / "cache"))
        patch.setenv("DS_ACCELERATOR", "cpu")
        for name, extra in {
            "plain": [],
            "fsdp": ["fsdp=full_shard"],
            "zero3": [f"deepspeed={EXAMPLES / 'ds_z3_offload.json'}"],
            "zero3_model_only": [f"deepspeed={EXAMPLES / 'ds_z3_offload.json'}", "save_only_model=true"],
        }.items():
            run_recipe(load_config(None, [*BASE, *extra, f"output_dir={root / name}"]))
            assert not dist.is_initialized()  # the one-process group is gone after the run
    return root


def test_single_process_fsdp2_shards_and_matches_a_plain_run(runs):
    assert (runs / "fsdp" / "checkpoint-3" / "dcp").is_dir()  # a sharded (DCP) checkpoint: FSDP2 really ran
    assert not (runs / "plain" / "checkpoint-3" / "dcp").exists()
    assert losses(runs / "fsdp") == pytest.approx(losses(runs / "plain"), abs=1e-4)
    assert (runs / "fsdp" / "model.safetensors").is_file()


def test_single_process_deepspeed_zero3_offload_runs_the_engine(runs):
    assert (runs / "zero3" / "checkpoint-3" / "deepspeed").is_dir()
    assert losses(runs / "zero3") == pytest.approx(losses(runs / "plain"), abs=2e-3)
    assert (runs / "zero3" / "model.safetensors").is_file()
    assert torch.nn.functional.linear is torch._C._nn.linear  # ZeRO-3's process-wide replacement is undone


def test_deepspeed_save_only_model_checkpoints_hold_the_gathered_model(runs):
    """HF's save_only_model under DeepSpeed: the checkpoint is the model's weights gathered from the ZeRO-3
    partitions (no engine files, no optimizer), equal to the weights the full checkpoint holds."""
    ckpt = runs / "zero3_model_only" / "checkpoint-3"
    assert not (ckpt / "deepspeed").exists() and not (ckpt / "scheduler.pt").exists()
    saved = load_file(ckpt / "model.safetensors")
    full = tiny_model_like(runs / "zero3")
    load_sharded_checkpoint(runs / "zero3" / "checkpoint-3", full)
    state = full.state_dict()
    assert saved and all(torch.equal(saved[k], state[k]) for k in saved)


def tiny_model_like(run: Path) -> torch.nn.Module:
    """A model built from the config the run exported (random weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(run))


def test_missing_deepspeed_json_is_an_error_before_loading(tmp_path):
    with pytest.raises(ConfigError, match=r"deepspeed: DeepSpeed config file .*nope\.json does not exist"):
        load_config(None, [*BASE, f"deepspeed={tmp_path / 'nope.json'}", f"output_dir={tmp_path}"])
