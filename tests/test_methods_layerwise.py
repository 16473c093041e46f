"""Layer-wise GaLore/APOLLO (transformers' optim *_layerwise, LLaMA-Factory galore_layerwise / apollo_layerwise):
each parameter is updated inside backward by its own optimizer; the losses equal transformers.Trainer's on the
same tiny model, the state stays low-rank, the schedule reaches every parameter, checkpoints resume exactly, and
what needs the gradients kept is refused.

transformers 5.23 builds the schedule after accelerate has wrapped its layer-wise placeholder optimizer, so its
per-parameter optimizers keep the initial learning rate whatever lr_scheduler_type says; the comparison runs a
constant schedule, and tunesmith's schedule (LLaMA-Factory's behaviour) is checked on its own."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import REFERENCE_ARGS, tiny_model, tiny_tokenizer
from methods_helpers import micro_batches, setup, trainer_for
from transformers import Trainer as HFTrainer
from transformers import TrainingArguments as HFArgs

from tunesmith.config import load_config
from tunesmith.config.validate import validate_config
from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint import CheckpointSaver
from tunesmith.train.checkpoint_load import load_checkpoint
from tunesmith.train.layerwise import LayerwiseOptimizer
from tunesmith.train.trainer import Trainer
from tunesmith.utils.errors import ConfigError

TARGETS = r".*\.(q_proj|v_proj|up_proj|down_proj)"
STEPS = 4


@pytest.fixture(scope="module")
def batches():
    return micro_batches(tiny_tokenizer(), STEPS)


def _hf_losses(model, batches, tmp_path) -> list[float]:
    args = HFArgs(
        output_dir=str(tmp_path / "hf"),
        per_device_train_batch_size=1,
        max_steps=STEPS,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        optim="galore_adamw_layerwise",
        optim_target_modules=TARGETS,
        optim_args="rank=4,update_proj_gap=2",
        weight_decay=0.1,  # transformers drops it for GaLore
        **REFERENCE_ARGS,
        disable_tqdm=True,
        seed=0,
    )
    trainer = HFTrainer(model=model, args=args, train_dataset=batches, data_collator=lambda items: items[0])
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _ours(model, batches, tmp_path, *extra: str):
    overrides = [
        f"output_dir={tmp_path / 'ours'}",
        f"max_steps={STEPS}",
        "learning_rate=1e-2",
        "optim=galore_adamw_layerwise",
        f"optim_target_modules={TARGETS}",
        "optim_args=rank=4,update_proj_gap=2",
        "weight_decay=0.1",  # ignored by transformers' GaLore (the class defaults: eps 1e-6, no weight decay)
        "logging_steps=1",
        "disable_tqdm=true",
        *extra,
    ]
    cfg = load_config(None, overrides, validate=False)
    trainer = Trainer(model, cfg.train, batches)
    history = trainer.train().log_history
    trainer.close()
    return trainer, history


def test_losses_match_transformers(tmp_path, batches):
    base = tiny_model("qwen2")
    theirs = _hf_losses(copy.deepcopy(base), batches, tmp_path)
    trainer, ours = _ours(model := copy.deepcopy(base), batches, tmp_path, "lr_scheduler_type=constant")
    assert len(ours) == len(theirs) == STEPS
    assert [h["loss"] for h in ours] == pytest.approx(theirs, rel=1e-4)
    assert theirs[-1] < theirs[0]
    trainer, ours = _ours(
        model := copy.deepcopy(base), batches, tmp_path / "linear", "lr_scheduler_type=linear"
    )
    optimizer = trainer.optimizer
    assert isinstance(optimizer, LayerwiseOptimizer)
    weight = dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    state = optimizer.optimizer_of(weight).state[weight]
    assert 4 in state["exp_avg"].shape and state["exp_avg"].numel() < weight.numel() / 10  # low-rank
    assert all(p.grad is None for p in model.parameters())  # freed inside backward
    assert all(h["grad_norm"] > 0 for h in ours)  # measured in the hooks, before each update
    assert [h["lr"] for h in ours] == pytest.approx([1e-2, 7.5e-3, 5e-3, 2.5e-3])
    assert {g["lr"] for g in optimizer.param_groups} == {0.0}  # the linear schedule reached every parameter


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics):
        trainer.should_stop = trainer.state.global_step == self.step


@pytest.mark.parametrize("option", ["galore", "apollo"])
def test_lf_layerwise_resumes_exactly(tmp_path, tiny_model_dir, option):
    opts = (f"use_{option}=true", f"{option}_layerwise=true", f"{option}_rank=4", "max_grad_norm=0")
    tok = tiny_tokenizer()
    data = micro_batches(tok, 4)
    cfg, _, straight = setup(tiny_model_dir, tmp_path / "a", *opts, steps=4)
    trainer_for(cfg, straight, data).train()
    cfg, _, first = setup(tiny_model_dir, tmp_path / "b", *opts, steps=4)
    half = trainer_for(cfg, first, data, callbacks=[_StopAt(2)])
    half.train()
    saved = CheckpointSaver(cfg.train).save(half)
    cfg, _, resumed = setup(tiny_model_dir, tmp_path / "c", *opts, steps=4)
    again = trainer_for(cfg, resumed, data[2:])
    load_checkpoint(again, saved)
    again.train()
    assert again.state.global_step == 4
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("gradient_accumulation_steps=2", "gradient_accumulation_steps.*must be 1"),
        ("fp16=true", "fp16.*use bf16"),
        ("max_grad_norm=1.0", "max_grad_norm.*no clipping"),
        ('dist_config={"name": "fsdp2"}', "dist_config.*fsdp2 owns the gradients"),
    ],
)
def test_refusals(extra, match):
    base = ["model=builtin:tiny", "dataset=demo", "dataset_dir=builtin:demo", "finetuning_type=full"]
    cfg = load_config(None, [*base, "use_galore=true", "galore_layerwise=true", extra], validate=False)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)
