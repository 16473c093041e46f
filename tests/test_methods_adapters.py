"""Adapter variants through peft: PiSSA starts from the principal singular vectors and converts back to a plain
LoRA; OFT, BOFT and VeRA train only their adapter; LoRA options (bias, target regex, dtype, target parameters)
do what they say; every saved adapter reloads in peft with equal logits."""

from __future__ import annotations

import pytest
import torch
from helpers import save_tiny_model
from methods_helpers import changed, logits, micro_batches, setup, snapshot, trainer_for
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM

from tunesmith.model import save_pretrained_output
from tunesmith.model.adapter_variants import PISSA_CONVERTED_DIR
from tunesmith.train.adalora import build_adalora_budget
from tunesmith.train.pissa_convert import build_pissa_convert
from tunesmith.utils.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir


def _train(cfg, model, tok, steps=2, callbacks=()):
    data = micro_batches(tok, steps)
    trainer = trainer_for(cfg, model, data, callbacks=list(callbacks))
    trainer.train()
    trainer.close()
    return data


def _reload_error(model, tok, out_dir, batch):
    out = save_pretrained_output(model, tok, out_dir)
    return (logits(AutoPeftModelForCausalLM.from_pretrained(out), batch) - logits(model, batch)).abs().max()


def test_pissa_starts_from_principal_singular_vectors_and_converts(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=lora",
        "lora_rank=4",
        "lora_alpha=4",
        "pissa_init=true",
        "pissa_iter=-1",
        "pissa_convert=true",
    )
    weight = AutoModelForCausalLM.from_pretrained(tiny).model.layers[0].self_attn.q_proj.weight.detach()
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    assert torch.allclose(delta, u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-5)
    assert torch.allclose(layer.base_layer.weight + delta, weight, atol=1e-5)  # residual + principal part
    data = _train(cfg, model, tok, callbacks=[build_pissa_convert(cfg)])
    assert _reload_error(model, tok, tmp_path / "final", data[0]) < 1e-4
    converted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny), tmp_path / PISSA_CONVERTED_DIR
    )
    assert converted.peft_config["default"].init_lora_weights is True  # a plain LoRA of the original weights
    assert (logits(converted, data[0]) - logits(model, data[0])).abs().max() < 1e-4


def test_pissa_convert_needs_pissa(tmp_path, tiny):
    cfg, _, _ = setup(tiny, tmp_path, "finetuning_type=lora", "pissa_convert=true")
    with pytest.raises(ConfigError, match="pissa_convert"):
        build_pissa_convert(cfg)


@pytest.mark.parametrize(
    ("kind", "options", "marker"),
    [
        ("oft", ["oft_block_size=16", "target_modules=q_proj,v_proj"], "oft_"),
        ("boft", ["boft_block_size=8", "target_modules=q_proj,v_proj"], "boft_"),
        ("vera", ["vera_rank=8", "target_modules=gate_proj,up_proj"], "vera_lambda"),
    ],
)
def test_adapter_type_trains_only_its_weights_and_reloads(tmp_path, tiny, kind, options, marker):
    cfg, tok, model = setup(tiny, tmp_path, f"finetuning_type={kind}", *options)
    before = snapshot(model)
    data = _train(cfg, model, tok)
    moved = changed(model, before)
    assert moved and all(marker in n for n in moved)
    assert _reload_error(model, tok, tmp_path / "final", data[0]) < 1e-4


def test_oft_on_a_4bit_base_reloads(tmp_path, tiny):
    """QOFT (LLaMA-Factory's extras/qoft): OFT adapters around bitsandbytes 4-bit layers."""
    from transformers import BitsAndBytesConfig

    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=oft",
        "quantization_bit=4",
        "oft_block_size=16",
        "target_modules=q_proj",
    )
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert type(layer.base_layer).__name__ == "Linear4bit"
    before = snapshot(model)
    data = _train(cfg, model, tok)
    moved = changed(model, before)
    assert moved and all("oft_" in n for n in moved)
    out = save_pretrained_output(model, tok, tmp_path / "final")
    quant = BitsAndBytesConfig.from_dict(model.config.quantization_config.to_dict())  # the run's own
    base = AutoModelForCausalLM.from_pretrained(tiny, quantization_config=quant)
    reloaded = PeftModel.from_pretrained(base, out)
    assert (logits(reloaded, data[0]) - logits(model, data[0])).abs().max() < 1e-4


def test_lora_bias_target_regex_and_dtype(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=lora",
        "lora_rank=4",
        "lora_bias=all",
        r"target_regex=.*layers\.1\.self_attn\.(q|v)_proj",
        "lora_dtype=bfloat16",
    )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    lora = {n for n in names if "lora_" in n}
    assert lora and all("layers.1.self_attn.q_proj" in n or "layers.1.self_attn.v_proj" in n for n in lora)
    assert any(n.endswith("bias") and "lora_" not in n for n in names)  # biases train with lora_bias: all
    assert {p.dtype for n, p in model.named_parameters() if n in lora} == {torch.bfloat16}
    before = snapshot(model)
    data = _train(cfg, model, tok)
    assert {n for n in changed(model, before)} <= set(names)
    assert _reload_error(model, tok, tmp_path / "final", data[0]) < 1e-2  # bf16 adapter weights


def test_target_parameters_on_moe_experts(tmp_path):
    moe = save_tiny_model(tmp_path / "moe", "qwen3_moe")
    expert = next(
        n for n, _ in AutoModelForCausalLM.from_pretrained(moe).named_parameters() if ".experts." in n
    )
    cfg, tok, model = setup(
        moe,
        tmp_path,
        "finetuning_type=lora",
        "lora_rank=2",
        "target_modules=q_proj",
        f"target_parameters={expert.rsplit('.', 1)[-1]}",
    )
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("experts" in n for n in lora)
    data = _train(cfg, model, tok)
    assert _reload_error(model, tok, tmp_path / "final", data[0]) < 1e-4


def test_all_linear_on_fused_experts_with_dropout_says_what_to_set(tmp_path):
    moe = save_tiny_model(tmp_path / "moe", "qwen3_moe")
    with pytest.raises(ConfigError, match="lora_dropout: 0.05: .*fused MoE expert weights.*lora_dropout: 0"):
        setup(moe, tmp_path, "finetuning_type=lora", "target_modules=all-linear", "lora_dropout=0.05")


def test_adalora_prunes_ranks_adds_orth_penalty_and_reloads(tmp_path, tiny):
    cfg, tok, model = setup(
        tiny,
        tmp_path,
        "finetuning_type=adalora",
        "target_modules=q_proj,v_proj",
        "adalora_init_r=6",
        "adalora_target_r=2",
        "adalora_tinit=1",
        "adalora_tfinal=1",
        steps=4,
    )
    batch = micro_batches(tok, 1)[0]
    model.train()
    reference = model(**batch).loss  # peft adds its orthogonality penalty to the model's own mean CE
    trainer = trainer_for(cfg, model, [batch] * 4, callbacks=[build_adalora_budget(cfg)])
    ce_sum, aux = trainer.loss_fn(model, batch)
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert (ce_sum / tokens + aux).item() == pytest.approx(reference.item(), rel=1e-5)
    trainer.train()
    trainer.close()
    pattern = model.peft_config["default"].rank_pattern
    kept = sum(int(torch.as_tensor(v).sum()) for v in pattern.values())
    assert pattern and kept <= 2 * len(pattern) < 6 * len(pattern)  # the budget shrank to target_r on average
    assert _reload_error(model, tok, tmp_path / "final", batch) < 1e-4
