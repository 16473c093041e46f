"""Continuing from saved adapters: the last one keeps training (all before it merged), or with
create_new_adapter all are merged and a new LoRA trains on top; the saved result loads in peft with equal
logits. resume_only_model takes only a checkpoint's weights."""

from __future__ import annotations

import pytest
import torch
from methods_helpers import logits, micro_batches, setup, trainer_for
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM

from tunesmith.model import save_pretrained_output
from tunesmith.recipes.lifecycle import resume
from tunesmith.train.checkpoint import CheckpointSaver

LORA = ("finetuning_type=lora", "lora_rank=4", "lora_alpha=8")


def _train(cfg, model, tok, steps=2):
    trainer = trainer_for(cfg, model, micro_batches(tok, steps))
    trainer.train()
    trainer.close()
    return trainer


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two LoRA adapters trained one after the other on the tiny model."""
    folders = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"adapter{i}")
        cfg, tok, model = setup(tiny_model_dir, out, *LORA, f"seed={i}")
        _train(cfg, model, tok)
        folders.append(save_pretrained_output(model, tok, out / "final"))
    return folders


def _base_with(model_dir, folders):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for folder in folders:
        model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    return model


def test_last_adapter_keeps_training(tmp_path, tiny_model_dir, adapters):
    cfg, tok, model = setup(
        tiny_model_dir, tmp_path, *LORA, f"adapter_name_or_path={adapters[0]},{adapters[1]}"
    )
    batch = micro_batches(tok, 1)[0]
    expected = logits(_base_with(tiny_model_dir, adapters), batch)
    assert (logits(model, batch) - expected).abs().max() < 1e-4  # merged first, second attached
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _train(cfg, model, tok)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    out = save_pretrained_output(model, tok, tmp_path / "final")
    reloaded = PeftModel.from_pretrained(_base_with(tiny_model_dir, adapters[:1]), out)
    assert (logits(reloaded, batch) - logits(model, batch)).abs().max() < 1e-4


def test_create_new_adapter_merges_all_and_saves_the_merged_base(tmp_path, tiny_model_dir, adapters):
    cfg, tok, model = setup(
        tiny_model_dir,
        tmp_path,
        *LORA,
        f"adapter_name_or_path={adapters[0]},{adapters[1]}",
        "create_new_adapter=true",
    )
    batch = micro_batches(tok, 1)[0]
    assert (logits(model, batch) - logits(_base_with(tiny_model_dir, adapters), batch)).abs().max() < 1e-4
    _train(cfg, model, tok)
    out = save_pretrained_output(model, tok, tmp_path / "final")
    assert (
        logits(AutoPeftModelForCausalLM.from_pretrained(out), batch) - logits(model, batch)
    ).abs().max() < 1e-4


def test_resume_only_model_takes_weights_not_state(tmp_path, tiny_model_dir):
    cfg, tok, model = setup(tiny_model_dir, tmp_path, *LORA)
    trainer = _train(cfg, model, tok)
    saved = CheckpointSaver(cfg.train).save(trainer)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg2, tok2, fresh = setup(tiny_model_dir, tmp_path / "again", *LORA, "resume_only_model=true")
    again = trainer_for(cfg2, fresh, micro_batches(tok2, 2))
    resume(again, saved, only_model=cfg2.methods.resume_only_model)
    assert again.state.global_step == 0 and not again.optimizer.state
    assert all(torch.equal(p, weights[n]) for n, p in fresh.named_parameters() if n in weights)
