"""Selective training: the parameters that change are exactly the ones the freeze/trainable options, LF's freeze
extras and LLaMA-Pro layers, LISA's draws and the LLaMA-Pro expansion select; saved models reload with equal
logits."""

from __future__ import annotations

import pytest
import torch
from methods_helpers import changed, logits, micro_batches, setup, snapshot, trainer_for
from transformers import AutoModelForCausalLM

from tunesmith.model import save_pretrained_output
from tunesmith.train.checkpoint import model_weights
from tunesmith.train.lisa import build_lisa
from tunesmith.utils.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir


def _run(cfg, model, tok, steps=2, **kwargs):
    before = snapshot(model)
    data = micro_batches(tok, steps)
    trainer = trainer_for(cfg, model, data, **kwargs)
    trainer.train()
    trainer.close()
    return changed(model, before), data


def test_freeze_and_trainable_regex_and_prefixes(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "freeze_parameters_regex=.*self_attn.*",
        "freeze_parameters=model.embed_tokens,lm_head",
        "trainable_parameters_regex=layers\\.1\\.self_attn\\.q_proj",
        "weight_decay=0",
    )
    names = [n for n, _ in model.named_parameters()]
    selected = {
        n
        for n in names
        if not ("self_attn" in n or n.startswith(("model.embed_tokens", "lm_head")))
        or "layers.1.self_attn.q_proj" in n
    }
    assert {n for n, p in model.named_parameters() if p.requires_grad} == selected
    moved, _ = _run(cfg, model, tok)
    assert moved == selected


def test_freeze_ratio_freezes_from_the_bottom(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "freeze_parameters_ratio=0.5")
    params = list(model.named_parameters())
    frozen = [n for n, p in params if not p.requires_grad]
    assert frozen == [n for n, _ in params[: len(frozen)]] and frozen[0] == "model.embed_tokens.weight"
    assert sum(p.numel() for n, p in params if n in frozen) <= 0.5 * sum(p.numel() for _, p in params)


def test_selection_needs_full_tuning(tmp_path, tiny):
    with pytest.raises(ConfigError, match="finetuning_type: full"):
        setup(tiny, tmp_path, "finetuning_type=lora", "freeze_parameters=lm_head")


def test_bad_regex_is_a_config_error(tmp_path, tiny):
    with pytest.raises(ConfigError, match="freeze_parameters_regex"):
        setup(tiny, tmp_path, "freeze_parameters_regex=([")


def test_freeze_extra_modules_and_llama_pro_layers(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=freeze",
        "freeze_trainable_layers=1",
        "freeze_extra_modules=embed_tokens",
        "use_llama_pro=true",
    )
    moved, _ = _run(cfg, model, tok)
    # 2 layers, 1 trainable with llama_pro: the last of a group of 2 -> layer 1; plus the embedding
    expected = {
        n for n, _ in model.named_parameters() if n.startswith(("model.layers.1.", "model.embed_tokens"))
    }
    assert moved == expected


def test_lisa_trains_only_the_drawn_layers_and_redraws(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny, tmp_path, "lisa_activated_layers=1", "lisa_step_interval=1", "weight_decay=0", steps=1
    )
    lisa = build_lisa(cfg)
    draws = [lisa.draw(model, step)[0] for step in range(8)]
    assert set(draws) == {0, 1}  # re-drawn: both layers come up over 8 draws
    assert lisa.draw(model, 3) == lisa.draw(model, 3)  # the same step draws the same layers (resume)
    lisa.interval = 100  # one draw for this run
    moved, _ = _run(cfg, model, tok, steps=1, callbacks=[lisa])
    layer = lisa.active[0]
    expected = {
        n for n, _ in model.named_parameters() if "layers." not in n or n.startswith(f"model.layers.{layer}.")
    }
    assert moved == expected
    assert set(model_weights(model)) == set(model.state_dict())  # checkpoints keep every weight


def test_llama_pro_expansion_trains_new_blocks_and_reloads(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "llamapro_num_new_blocks=2")
    assert model.config.num_hidden_layers == 4 and len(model.config.layer_types) == 4
    base = AutoModelForCausalLM.from_pretrained(tiny)
    data = micro_batches(tok, 2)
    assert torch.allclose(logits(model, data[0]), logits(base, data[0]), atol=1e-5)  # identity blocks
    moved, _ = _run(cfg, model, tok)
    assert moved == {
        n for n, _ in model.named_parameters() if n.startswith(("model.layers.1.", "model.layers.3."))
    }
    out = save_pretrained_output(model, tok, tmp_path / "final")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.config.num_hidden_layers == 4
    assert (logits(reloaded, data[0]) - logits(model, data[0])).abs().max() < 1e-5


def test_llama_pro_with_lora_targets_only_the_spread_layers(tmp_path, tiny):
    _, _, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=lora",
        "use_llama_pro=true",
        "freeze_trainable_layers=1",
        "lora_rank=2",
    )
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all(".layers.1." in n and "lora_" in n for n in lora)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (("finetuning_type=full", "use_llama_pro=true"), "use_llama_pro"),
        (("finetuning_type=lora", "freeze_extra_modules=lm_head"), "freeze_extra_modules"),
    ],
)
def test_options_outside_their_finetuning_type_are_errors(tmp_path, tiny, options, field):
    with pytest.raises(ConfigError, match=field):
        setup(tiny, tmp_path, *options)
