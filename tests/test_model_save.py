"""Each fine-tuning type trains a few steps, saves, and reloads through plain transformers / peft with the same
logits as the in-memory model."""

from __future__ import annotations

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from test_model_cfg import model_cfg
from transformers import AutoModelForCausalLM

from tunesmith.model import (
    load_model,
    load_tokenizer,
    prepare_for_training,
    save_merged,
    save_pretrained_output,
)
from tunesmith.model.loader import quantization_config


def _train(model: torch.nn.Module, steps: int = 3) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    batch = torch.arange(2 * 24).reshape(2, 24) % 500 + 10
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def _reload(kind: str, path, margs) -> torch.nn.Module:
    if kind in ("full", "freeze"):
        return AutoModelForCausalLM.from_pretrained(path)
    quant = quantization_config(margs, torch.float32)
    model = AutoPeftModelForCausalLM.from_pretrained(path, quantization_config=quant)
    for module in model.modules():  # bitsandbytes' CPU inference repacking computes slightly differently
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


@pytest.mark.parametrize(
    ("kind", "bits"), [("full", None), ("freeze", None), ("lora", None), ("qlora", 4), ("lora", 8)]
)
def test_train_save_reload_same_logits(kind, bits, tiny_model_dir, tmp_path):
    extra = {"quantization_bit": bits} if bits else {}
    cfg = model_cfg(
        str(tiny_model_dir), finetuning_type=kind, lora_rank=4, freeze_trainable_layers=1, **extra
    )
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    probe = torch.tensor([[5, 17, 99, 3, 250, 41, 8, 1000]])
    with torch.no_grad():
        start = model.eval()(input_ids=probe).logits
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    losses = _train(model)

    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    with torch.no_grad():
        trained = model.eval()(input_ids=probe).logits
    assert (trained - start).abs().max() > 1e-3  # training changed the model
    save_pretrained_output(model, tokenizer, tmp_path / "out")
    assert (tmp_path / "out" / ("adapter_config.json" if "lora" in kind else "config.json")).is_file()
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    with torch.no_grad():
        reloaded = _reload(kind, tmp_path / "out", cfg.model).eval()(input_ids=probe).logits
    torch.testing.assert_close(reloaded, trained, rtol=0, atol=1e-5)


def test_merged_lora_export_matches_adapter(tiny_model_dir, tmp_path):
    cfg = model_cfg(str(tiny_model_dir), finetuning_type="lora", lora_rank=4)
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    _train(model, steps=2)
    probe = torch.tensor([[5, 17, 99, 3, 250]])
    with torch.no_grad():
        expected = model.eval()(input_ids=probe).logits
    save_merged(model, tokenizer, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=probe).logits, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_name", ["builtin:tiny", "tiny_dir"])
def test_lora_with_new_tokens_trains_their_rows_and_reloads(model_name, tiny_model_dir, tmp_path):
    source = str(tiny_model_dir) if model_name == "tiny_dir" else model_name
    cfg = model_cfg(source, finetuning_type="lora", lora_rank=4, add_special_tokens="<|act|>")
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    new_id = tokenizer.convert_tokens_to_ids("<|act|>")
    embed = model.get_input_embeddings()
    before = embed(torch.tensor([new_id])).detach().clone()
    batch = torch.tensor([[5, new_id, 17, new_id, 99, 3]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(embed(torch.tensor([new_id])), before)
    with torch.no_grad():
        expected = model.eval()(input_ids=batch).logits
    save_pretrained_output(model, tokenizer, tmp_path / "out")
    reloaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=batch).logits, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantised_random_base_is_shipped_and_requantises_identically(bits, tmp_path):
    cfg = model_cfg(
        "builtin:tiny", finetuning_type="qlora" if bits == 4 else "lora", lora_rank=4, quantization_bit=bits
    )
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    _train(model, steps=2)
    probe = torch.tensor([[5, 17, 99, 3, 250, 41, 8, 1000]])
    with torch.no_grad():
        expected = model.eval()(input_ids=probe).logits
    save_pretrained_output(model, tokenizer, tmp_path / "out")
    assert (tmp_path / "out" / "base_model" / "model.safetensors").is_file()
    reloaded = _reload("qlora", tmp_path / "out", cfg.model).eval()
    with torch.no_grad():  # double quantisation of the block scales re-rounds by about 1e-4
        torch.testing.assert_close(reloaded(input_ids=probe).logits, expected, rtol=0, atol=1e-3)


def test_lora_on_moe_experts_trains_and_reloads(tmp_path):
    from helpers import save_tiny_model

    path = save_tiny_model(tmp_path / "moe", arch="qwen3_moe")
    cfg = model_cfg(str(path), finetuning_type="lora", lora_rank=4)
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    assert any("mlp.experts" in n and "lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    losses = _train(model)
    assert losses[-1] < losses[0]
    probe = torch.tensor([[5, 17, 99, 3, 250, 41, 8, 1000]])
    with torch.no_grad():
        expected = model.eval()(input_ids=probe).logits
    save_pretrained_output(model, tokenizer, tmp_path / "out")
    with torch.no_grad():
        got = _reload("lora", tmp_path / "out", cfg.model).eval()(input_ids=probe).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
