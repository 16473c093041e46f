"""Loss functions: chunked CE equals full CE (value and gradient), label smoothing, MoE auxiliary loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model

from tunesmith.train.loss import CausalLMLoss, chunked_ce_sum, takes_logit_mask, token_ce_sum, valid_tokens


def batch(rows: int = 3, length: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 400, (rows, length), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100
    labels[1, 15:] = -100
    mask = torch.ones_like(ids)
    mask[-1, 20:] = 0
    labels[-1, 20:] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_sum_loss_equals_model_mean_times_tokens():
    model, b = tiny_model("llama"), batch()
    ce, aux = CausalLMLoss()(model, b)
    reference = model(**b).loss.detach()  # transformers' own mean over shifted valid tokens
    assert float(aux) == 0.0
    assert float(ce.detach() / valid_tokens(b["labels"])) == pytest.approx(float(reference), rel=1e-6)


@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_chunked_loss_matches_full_value_and_gradient(chunk):
    b = batch()
    full_model, chunk_model = tiny_model("qwen2"), tiny_model("qwen2")
    full, _ = CausalLMLoss()(full_model, b)
    chunked, _ = CausalLMLoss(chunk_size=chunk)(chunk_model, b)
    assert float(chunked) == pytest.approx(float(full), rel=1e-5)
    full.backward()
    chunked.backward()
    ref, got = grads(full_model), grads(chunk_model)
    assert ref.keys() == got.keys() and "lm_head.weight" in got
    for name in ref:  # chunk sums reorder float additions: compare each gradient by its relative error norm
        error = (got[name] - ref[name]).norm() / ref[name].norm()
        assert error < 1e-5, (name, float(error))


def test_chunked_ce_never_builds_full_logits():
    hidden, vocab = torch.randn(2, 32, 16, requires_grad=True), torch.nn.Linear(16, 50, bias=False)
    labels = torch.randint(0, 50, (2, 32))
    shapes = []
    vocab.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    total = chunked_ce_sum(hidden, vocab, labels, chunk_size=8)
    total.backward()
    assert shapes and all(
        s[1] <= 8 for s in shapes
    )  # at most one chunk of logits at a time, also in backward
    assert float(total) == pytest.approx(float(token_ce_sum(vocab(hidden), labels)), rel=1e-5)


def test_label_smoothing_formula():
    g = torch.Generator().manual_seed(0)  # fixed data: the test must not depend on the tests before it
    logits, labels = torch.randn(2, 10, 30, generator=g), torch.randint(0, 30, (2, 10), generator=g)
    labels[0, 3:6] = -100
    eps = 0.1
    got = token_ce_sum(logits, labels, eps)
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    target = labels[:, 1:]
    keep = target != -100
    nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(-1)
    expected = ((1 - eps) * nll + eps * smooth)[keep].sum()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(got) != pytest.approx(float(token_ce_sum(logits, labels)), rel=1e-3)


def test_moe_aux_loss_matches_model_and_chunked_path():
    coef = 0.02
    model = tiny_model("qwen3_moe", router_aux_loss_coef=coef)
    b = batch(rows=2)
    b.pop("attention_mask")
    ce, aux = CausalLMLoss(aux_loss_coef=coef)(model, b)
    reference = model(**b, output_router_logits=True)
    assert float(aux) > 0
    assert float(ce.detach() / valid_tokens(b["labels"]) + aux) == pytest.approx(
        float(reference.loss), rel=1e-5
    )
    ce_c, aux_c = CausalLMLoss(aux_loss_coef=coef, chunk_size=7)(model, b)
    assert float(ce_c) == pytest.approx(float(ce), rel=1e-5)
    assert float(aux_c) == pytest.approx(float(aux), rel=1e-5)


def _full_logits_ce(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**{k: v for k, v in b.items() if k != "labels"}, use_cache=False)
    return token_ce_sum(out.logits, b["labels"])


def packed() -> dict[str, torch.Tensor]:
    """Two sequences in one row (12 and 18 tokens), prompts masked, as padding_free builds them."""
    ids = torch.randint(3, 400, (1, 30), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :4] = labels[0, 12:17] = -100
    positions = torch.cat([torch.arange(12), torch.arange(18)]).view(1, 30)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("make", [batch, packed])
def test_logits_only_where_targets_are_same_loss_and_gradient(make, lora):
    b = make()
    model = tiny_model("llama")
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    rows = []
    head = (model.get_base_model() if lora else model).lm_head
    hook = head.register_forward_hook(lambda m, a, out: rows.append(out.shape[0]))
    ce, _ = CausalLMLoss()(model, b)
    hook.remove()
    ce.backward()
    got = grads(model)
    model.zero_grad()
    reference = _full_logits_ce(model, b)
    reference.backward()
    assert rows == [valid_tokens(b["labels"])]  # the LM head ran on the positions with a target only
    assert float(ce) == pytest.approx(float(reference), rel=1e-6)
    for name, ref in grads(model).items():
        assert torch.allclose(got[name], ref, rtol=1e-5, atol=1e-7), name


def test_model_without_logit_mask_gets_full_logits():
    assert takes_logit_mask(type(tiny_model("llama")))
    assert not takes_logit_mask(torch.nn.Linear)
