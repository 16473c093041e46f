"""LoRA+, GaLore, APOLLO, BAdam and Adam-mini: each trains a few steps and shows its defining effect (param-group
learning rates, low-rank optimizer states, block-wise updates, per-block second moments); saved results reload
with equal logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from methods_helpers import changed, logits, micro_batches, setup, snapshot, trainer_for
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

from tunesmith.model import save_pretrained_output
from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint import CheckpointSaver
from tunesmith.train.checkpoint_load import load_checkpoint
from tunesmith.utils.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir


def _train(cfg, model, tok, steps_data=3):
    data = micro_batches(tok, steps_data)
    trainer = trainer_for(cfg, model, data)
    history = trainer.train().log_history
    trainer.close()
    return trainer, data, history


def test_loraplus_groups_and_reload(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "finetuning_type=lora", "lorap_lr_ratio=16", "lora_rank=4")
    trainer, data, history = _train(cfg, model, tok)
    groups = {(g["names"][0].split(".")[-3] if g["names"] else ""): g for g in trainer.optimizer.param_groups}
    assert groups["lora_A"]["initial_lr"] == pytest.approx(1e-2)
    assert groups["lora_B"]["initial_lr"] == pytest.approx(16e-2)
    assert all("lora_B" in n for n in groups["lora_B"]["names"])
    ratios = [g["lr"] for g in trainer.optimizer.param_groups if g["params"]]
    assert max(ratios) == pytest.approx(16 * min(ratios))  # the schedule scales both alike
    out = save_pretrained_output(model, tok, tmp_path / "final")
    expected = logits(model, data[0])
    got = logits(AutoPeftModelForCausalLM.from_pretrained(out), data[0])
    assert (got - expected).abs().max() < 1e-4


def test_loraplus_needs_lora(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "loraplus_lr_ratio=16")
    with pytest.raises(ConfigError, match="LoRA B"):
        trainer_for(cfg, model, micro_batches(tok, 1))


@pytest.mark.parametrize(
    "overrides",
    [
        ("use_galore=true", "galore_rank=4", "galore_target=mlp,self_attn"),
        ("optim=galore_adamw", "optim_target_modules=all-linear", "optim_args=rank=4"),
        ("use_apollo=true", "apollo_rank=4", "apollo_scale_type=tensor"),
    ],
    ids=["galore", "hf_galore", "apollo"],
)
def test_low_rank_state_and_reload(tmp_path, tiny, overrides):
    cfg, tok, model = setup(tiny, tmp_path, *overrides)
    trainer, data, history = _train(cfg, model, tok)
    weight = dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"]  # 128 x 64
    state = trainer.optimizer.state[weight]
    assert 4 in state["exp_avg"].shape and state["exp_avg"].numel() < weight.numel() / 10
    embed_state = trainer.optimizer.state[dict(model.named_parameters())["model.embed_tokens.weight"]]
    assert (
        embed_state["exp_avg"].shape == dict(model.named_parameters())["model.embed_tokens.weight"].shape
    )  # not a target: full state
    assert (
        weight.detach()
        .ne(snapshot(AutoModelForCausalLM.from_pretrained(tiny))["model.layers.0.mlp.up_proj.weight"])
        .any()
    )
    out = save_pretrained_output(model, tok, tmp_path / "final")
    assert (
        logits(AutoModelForCausalLM.from_pretrained(out), data[0]) - logits(model, data[0])
    ).abs().max() < 1e-5


def test_badam_layer_mode_updates_one_block(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny, tmp_path, "use_badam=true", "badam_switch_mode=descending", "badam_switch_interval=50"
    )
    before = snapshot(model)
    _, data, history = _train(cfg, model, tok)
    assert changed(model, before) == {n for n in before if n.startswith("model.layers.1.")}
    out = save_pretrained_output(model, tok, tmp_path / "final")
    assert (
        logits(AutoModelForCausalLM.from_pretrained(out), data[0]) - logits(model, data[0])
    ).abs().max() < 1e-5


def test_badam_ratio_mode_is_refused(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "use_badam=true", "badam_mode=ratio")
    with pytest.raises(ConfigError, match="badam_mode: ratio"):
        trainer_for(cfg, model, micro_batches(tok, 1))


def test_adam_mini_keeps_one_second_moment_per_block(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "use_adam_mini=true")
    before = snapshot(model)
    trainer, data, history = _train(cfg, model, tok)
    assert changed(model, before)
    weight = dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    v = trainer.optimizer.state[weight].get("vmean")
    assert v is not None and v.numel() < weight.numel()
    out = save_pretrained_output(model, tok, tmp_path / "final")
    assert (
        logits(AutoModelForCausalLM.from_pretrained(out), data[0]) - logits(model, data[0])
    ).abs().max() < 1e-5


def test_two_optimizer_methods_are_refused(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "use_galore=true", "use_adam_mini=true")
    with pytest.raises(ConfigError, match="use_galore and use_adam_mini"):
        trainer_for(cfg, model, micro_batches(tok, 1))


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics):
        trainer.should_stop = trainer.state.global_step == self.step


@pytest.mark.parametrize("option", ["use_galore=true", "use_apollo=true"])
def test_low_rank_checkpoint_resumes_exactly(tmp_path, tiny, option):
    opts = (option, option.replace("use_", "").replace("=true", "_rank=4"))
    cfg, tok, straight = setup(tiny, tmp_path / "a", *opts, steps=4)
    data = micro_batches(tok, 4)
    trainer_for(cfg, straight, data).train()
    cfg, _, first = setup(tiny, tmp_path / "b", *opts, steps=4)
    half = trainer_for(cfg, first, data, callbacks=[_StopAt(2)])
    half.train()
    saved = CheckpointSaver(cfg.train).save(half)
    cfg, _, resumed = setup(tiny, tmp_path / "c", *opts, steps=4)
    again = trainer_for(cfg, resumed, data[2:])  # a plain list has no data position to restore: the rest
    load_checkpoint(again, saved)
    again.train()
    assert half.state.global_step == 2 and again.state.global_step == 4
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


BNB_NAMES = ["paged_lion_8bit", "rmsprop_bnb_8bit", "ademamix", "ademamix_8bit", "lion_32bit"]


@pytest.mark.parametrize("name", BNB_NAMES)
def test_bnb_optim_names_match_transformers_choice(tmp_path, name):
    from transformers import Trainer as HfTrainer
    from transformers import TrainingArguments as HfArgs

    from tunesmith.config import load_config
    from tunesmith.train.optimizers import build_optimizer

    hf_cls, hf_kwargs = HfTrainer.get_optimizer_cls_and_kwargs(
        HfArgs(output_dir=str(tmp_path), optim=name, use_cpu=True)
    )
    cfg = load_config(None, [f"optim={name}", "learning_rate=1e-3"], validate=False)
    model = torch.nn.Linear(64, 4096)
    optimizer = build_optimizer(model, cfg.train)
    assert isinstance(optimizer, hf_cls)
    for key in ("betas", "alpha", "eps"):
        if key in hf_kwargs:
            assert tuple(np.atleast_1d(optimizer.defaults[key])) == tuple(np.atleast_1d(hf_kwargs[key])), key
    assert optimizer.args.optim_bits == hf_kwargs["optim_bits"]
    before = model.weight.detach().clone()
    model(torch.randn(2, 64)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.weight, before)
