"""Fine-tuning types: exact LoRA parameter counts, LoRA switches, freeze layer/module selection, errors."""

from __future__ import annotations

import math

import pytest
import torch
from test_model_cfg import model_cfg

from tunesmith.model import (
    count_parameters,
    load_model,
    load_tokenizer,
    prepare_for_training,
    report_parameters,
)
from tunesmith.utils.errors import ConfigError

# tiny Qwen2 (tests/helpers.py): hidden 64, 2 layers, 4 heads of 16, 2 KV heads, intermediate 128
LORA_SHAPES = {  # (in, out) of every linear layer in one decoder layer
    "q_proj": (64, 64), "k_proj": (64, 32), "v_proj": (64, 32), "o_proj": (64, 64),
    "gate_proj": (64, 128), "up_proj": (64, 128), "down_proj": (128, 64),
}  # fmt: skip
LAYERS = 2


def _prepare(model_dir, train=None, **fields):
    cfg = model_cfg(str(model_dir), train=train, **fields)
    model = load_model(cfg, load_tokenizer(cfg))
    base_total = count_parameters(model)[1]
    return prepare_for_training(model, cfg), base_total


def _trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("targets", "names"), [("all-linear", list(LORA_SHAPES)), ("q_proj,v_proj", ["q_proj", "v_proj"])]
)
def test_lora_counts_are_exact(tiny_model_dir, targets, names):
    rank = 4
    model, base_total = _prepare(
        tiny_model_dir, finetuning_type="lora", lora_rank=rank, target_modules=targets
    )
    expected = LAYERS * sum(rank * sum(LORA_SHAPES[n]) for n in names)
    assert count_parameters(model) == (expected, base_total + expected)
    assert f"trainable params: {expected:,} || all params: {base_total + expected:,}" in report_parameters(
        model
    )
    assert all("lora_" in n for n in _trainable_names(model))


def test_lora_switches_change_the_adapter(tiny_model_dir):
    plain, _ = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4, lora_alpha=16)
    rs, _ = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4, lora_alpha=16, use_rslora=True)
    dora, _ = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4, use_dora=True)
    saved, _ = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4, modules_to_save="lm_head")
    q_proj = "base_model.model.model.layers.0.self_attn.q_proj"
    assert plain.get_submodule(q_proj).scaling["default"] == 16 / 4
    assert rs.get_submodule(q_proj).scaling["default"] == pytest.approx(16 / math.sqrt(4))
    dora_extra = count_parameters(dora)[0] - count_parameters(plain)[0]
    assert dora_extra == LAYERS * sum(out for _, out in LORA_SHAPES.values())  # one magnitude per output row
    lm_head = saved.get_base_model().lm_head.weight.numel()
    assert count_parameters(saved)[0] - count_parameters(plain)[0] == lm_head
    assert any("lm_head.modules_to_save" in n for n in _trainable_names(saved))


def test_qlora_counts_unpacked_4bit_weights(tiny_model_dir):
    lora, lora_base = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4)
    qlora, qlora_base = _prepare(tiny_model_dir, finetuning_type="qlora", lora_rank=4)
    assert qlora_base == lora_base
    assert count_parameters(qlora) == count_parameters(lora)


def test_full_trains_everything(tiny_model_dir):
    model, total = _prepare(tiny_model_dir, finetuning_type="full")
    assert count_parameters(model) == (total, total)


@pytest.mark.parametrize(
    ("layers", "modules", "prefixes"),
    [
        (1, "all", ["model.layers.1."]),
        (-1, "all", ["model.layers.0."]),
        (2, "mlp", ["model.layers.0.mlp.", "model.layers.1.mlp."]),
        (
            1,
            ["self_attn", "post_attention_layernorm"],
            ["model.layers.1.self_attn.", "model.layers.1.post_attention"],
        ),
    ],
)
def test_freeze_trains_the_chosen_layers_and_modules(tiny_model_dir, layers, modules, prefixes):
    model, _ = _prepare(
        tiny_model_dir,
        finetuning_type="freeze",
        freeze_trainable_layers=layers,
        freeze_trainable_modules=modules,
    )
    trainable = _trainable_names(model)
    assert trainable
    assert all(any(n.startswith(p) for p in prefixes) for n in trainable)
    everything = {n for n, _ in model.named_parameters()}
    assert {n for n in everything if any(n.startswith(p) for p in prefixes)} == trainable


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"freeze_trainable_modules": "mlpp"}, "freeze_trainable_modules: ['mlpp'] not found"),
        ({"freeze_trainable_layers": 0}, "freeze_trainable_layers: 0 must be non-zero"),
        ({"freeze_trainable_layers": 3}, "at most 2"),
    ],
)
def test_freeze_errors(tiny_model_dir, fields, needle):
    with pytest.raises(ConfigError) as info:
        _prepare(tiny_model_dir, finetuning_type="freeze", **fields)
    assert needle in str(info.value)


def test_lora_unknown_target_is_a_config_error(tiny_model_dir):
    with pytest.raises(ConfigError, match="target_modules"):
        _prepare(tiny_model_dir, finetuning_type="lora", target_modules="nonexistent_proj")


def test_lora_init_follows_the_run_seed(tiny_model_dir):
    def lora_a(seed):
        model, _ = _prepare(tiny_model_dir, finetuning_type="lora", lora_rank=4, train={"seed": seed})
        return (
            model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj").lora_A["default"].weight
        )

    first, again, other = lora_a(1), lora_a(1), lora_a(2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_freeze_in_bfloat16_runs_without_autocast(tiny_model_dir):
    model, _ = _prepare(
        tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1, torch_dtype="bfloat16"
    )
    batch = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=batch, labels=batch).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.bfloat16 for g in grads)
