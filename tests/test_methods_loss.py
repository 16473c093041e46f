"""DFT, EAFT and ASFT token losses: their formulas on a hand-computed example, and a training step whose loss is
the formula on the model's own logits, normalised once per optimizer step."""

from __future__ import annotations

import math

import pytest
import torch
from methods_helpers import logits, micro_batches, setup, trainer_for

from tunesmith.train.sft_losses import weighted_ce_sum
from tunesmith.utils.errors import ConfigError

# one sequence of 3 positions over a vocabulary of 3; position 1 predicts label[2], position 0 predicts label[1]
LOGITS = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 1.0], [0.0, 0.0, 0.0]]])
LABELS = torch.tensor([[-100, 0, 2]])
REF = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])


def _softmax(row: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in row)
    return [math.exp(x) / z for x in row]


def _by_hand(method: str, alpha: float) -> float:
    total = 0.0
    for pos, target in ((0, 0), (1, 2)):
        p = _softmax(LOGITS[0, pos].tolist())
        ce = -math.log(p[target])
        if method == "eaft":  # vocabulary 3 < 20: the top-k is the whole distribution
            entropy = -sum(x * math.log(x) for x in p)
            total += ce * (entropy / 3.0) ** alpha
            continue
        total += ce * p[target]
        if method == "asft":
            q = _softmax(REF[0, pos].tolist())
            total += alpha * sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    return total


@pytest.mark.parametrize(("method", "alpha"), [("dft", 1.0), ("eaft", 1.0), ("eaft", 0.5), ("asft", 0.1)])
def test_formula_matches_hand_computation(method, alpha):
    got = weighted_ce_sum(method, LOGITS, LABELS, alpha, REF if method == "asft" else None)
    assert got.item() == pytest.approx(_by_hand(method, alpha), rel=1e-5)


def test_dft_gradient_uses_detached_weight():
    x = LOGITS.clone().requires_grad_(True)
    weighted_ce_sum("dft", x, LABELS).backward()
    p = torch.softmax(LOGITS[0, 0], -1)
    expected = p[0] * (p - torch.tensor([1.0, 0.0, 0.0]))  # weight p_y times d ce / d logits
    assert torch.allclose(x.grad[0, 0], expected, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir


@pytest.mark.parametrize("method", ["dft", "eaft", "asft"])
def test_training_step_loss_is_the_formula(tmp_path, tiny, method):
    cfg, tok, model = setup(
        tiny, tmp_path, f"use_{method}_loss=true", "gradient_accumulation_steps=2", steps=1
    )
    data = micro_batches(tok, 2)
    expected_sum = 0.0
    for mb in data:
        out = logits(model, mb)
        expected_sum += weighted_ce_sum(
            method, out, mb["labels"], 1.0 if method != "asft" else 0.1, out
        ).item()
    tokens = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in data)
    trainer = trainer_for(cfg, model, data)
    history = trainer.train().log_history
    trainer.close()
    assert history[0]["loss"] == pytest.approx(expected_sum / tokens, rel=1e-4)


def test_asft_reference_stays_the_starting_model_under_checkpointing(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "use_asft_loss=true", "gradient_checkpointing=true", steps=2)
    data = micro_batches(tok, 2)
    start = logits(model, data[0])
    trainer = trainer_for(cfg, model, data)
    trainer.train()
    trainer.close()
    reference = trainer.loss_fn.token_loss.reference
    assert (logits(reference, data[0]) - start).abs().max() < 1e-6  # not the trained (checkpointed) layers
    assert (logits(model, data[0]) - start).abs().max() > 1e-3


def test_two_losses_at_once_are_refused(tmp_path, tiny):
    cfg, tok, model = setup(tiny, tmp_path, "use_dft_loss=true", "use_eaft_loss=true")
    with pytest.raises(ConfigError, match="use_dft_loss and use_eaft_loss"):
        trainer_for(cfg, model, micro_batches(tok, 1))
