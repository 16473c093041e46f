"""Training preparation: activation checkpointing by module pattern, NEFTune, fused RMSNorm, MoE grouped GEMM."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import save_tiny_model
from test_model_cfg import model_cfg

from tunesmith.model import load_model, load_tokenizer, prepare_for_training
from tunesmith.utils.errors import ConfigError

BATCH = torch.arange(2 * 16).reshape(2, 16) % 300 + 7


def _prepare(model_dir, train=None, recompute=None, **fields):
    if recompute is not None:
        fields["recompute_modules"] = recompute
    cfg = model_cfg(str(model_dir), train=train, **fields)
    return prepare_for_training(load_model(cfg, load_tokenizer(cfg)), cfg)


def _grads_and_calls(model, module_name: str) -> tuple[dict[str, torch.Tensor], int]:
    calls = []
    model.get_submodule(module_name).register_forward_pre_hook(lambda *args: calls.append(1))
    model.train()
    model(input_ids=BATCH, labels=BATCH).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, len(calls)


@pytest.mark.parametrize(
    ("kind", "recompute", "reentrant", "prefix"),
    [
        ("full", None, False, ""),
        ("lora", None, False, "base_model.model."),
        ("lora", None, True, "base_model.model."),
        ("full", ["model.layers.{*}.mlp"], False, ""),
    ],
)
def test_checkpointing_recomputes_and_keeps_gradients(tiny_model_dir, kind, recompute, reentrant, prefix):
    plain = _prepare(tiny_model_dir, finetuning_type=kind)
    train = {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": reentrant}}
    ckpt = _prepare(tiny_model_dir, finetuning_type=kind, recompute=recompute, train=train)
    probe = f"{prefix}model.layers.1.mlp.gate_proj"
    ref_grads, ref_calls = _grads_and_calls(plain, probe)
    grads, calls = _grads_and_calls(ckpt, probe)
    assert ref_calls == 1 and calls == 2  # forward once, recomputed once during backward
    assert grads.keys() == ref_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointing_only_on_matching_modules(tiny_model_dir):
    model = _prepare(
        tiny_model_dir, recompute=["model.layers.{*}.mlp"], train={"gradient_checkpointing": True}
    )
    _, attn_calls = _grads_and_calls(model, "model.layers.1.self_attn.q_proj")
    assert attn_calls == 1
    with pytest.raises(ConfigError, match=r"recompute_modules: \['decoder.blocks.\{\*\}'\] match no module"):
        _prepare(tiny_model_dir, recompute=["decoder.blocks.{*}"], train={"gradient_checkpointing": True})


def test_neftune_noise_only_in_training(tiny_model_dir):
    alpha = 5.0
    plain = _prepare(tiny_model_dir)
    noisy = _prepare(tiny_model_dir, train={"neftune_noise_alpha": alpha})
    embed, ref = noisy.get_input_embeddings(), plain.get_input_embeddings()
    noisy.eval()
    assert torch.equal(embed(BATCH), ref(BATCH))
    noisy.train()
    diff = embed(BATCH) - ref(BATCH)
    bound = alpha / math.sqrt(BATCH.shape[1] * diff.shape[-1])
    assert diff.abs().max() <= bound + 1e-7
    assert diff.abs().max() > 0.9 * bound and diff.std() > 0.5 * bound / math.sqrt(3)


def test_fused_rmsnorm_matches_and_is_used(tiny_model_dir):
    plain = _prepare(tiny_model_dir)
    fused = _prepare(tiny_model_dir, use_fused_rmsnorm=True)
    calls = []
    original = torch.nn.functional.rms_norm
    torch.nn.functional.rms_norm = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        ref_grads, _ = _grads_and_calls(plain, "model.norm")
        grads, _ = _grads_and_calls(fused, "model.norm")
    finally:
        torch.nn.functional.rms_norm = original
    assert len(calls) == 2 * 2 + 1  # two norms per layer, plus the final norm
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_moe_grouped_gemm_matches_eager_experts(tmp_path):
    path = save_tiny_model(tmp_path / "moe", arch="qwen3_moe")
    grouped = _prepare(path, moe_grouped_gemm=True).eval()
    eager = _prepare(path).eval()
    eager.set_experts_implementation("eager")
    assert grouped.config._experts_implementation == "grouped_mm"
    with torch.no_grad():
        torch.testing.assert_close(
            grouped(input_ids=BATCH).logits, eager(input_ids=BATCH).logits, rtol=1e-4, atol=1e-5
        )
