"""Preference losses on hand batches: ORPO and SimPO against their published formulas and against
LLaMA-Factory's implementation; packed pairs score exactly like padded ones (no attention across sequences);
LD-DPO weighting and pref_ftx."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model, tiny_tokenizer

from tunesmith.config.arguments.preference import PreferenceArguments
from tunesmith.data.batching.pairs import collate_preference
from tunesmith.data.batching.strategies import BatchSettings
from tunesmith.train.losses.dpo import PairObjective, orpo_loss, simpo_loss
from tunesmith.train.losses.logps import run_logps

CHOSEN = torch.tensor([-0.7, -1.3, -2.1], dtype=torch.float64)  # per-token average log-probabilities
REJECTED = torch.tensor([-1.1, -0.9, -3.0], dtype=torch.float64)
# llamafactory 0.9.5, CustomDPOTrainer.odds_ratio_loss (beta 0.1) and .simpo_loss (beta 2.0, simpo_gamma 0.5) run
# on CHOSEN / REJECTED
LF_ORPO = [0.740933940595, 1.403984641700, 2.131880019018]
LF_SIMPO = [0.554355244469, 1.541008453833, 0.241008453833]


def test_orpo_and_simpo_match_llama_factory():
    assert orpo_loss(CHOSEN, REJECTED, 0.1).tolist() == pytest.approx(LF_ORPO, rel=1e-10)
    assert simpo_loss(CHOSEN, REJECTED, 2.0, 0.5).tolist() == pytest.approx(LF_SIMPO, rel=1e-10)


def test_orpo_and_simpo_match_the_papers():
    for c, r in zip(CHOSEN.tolist(), REJECTED.tolist(), strict=True):
        odds = (c - torch.log1p(-torch.exp(torch.tensor(c)))) - (r - torch.log1p(-torch.exp(torch.tensor(r))))
        orpo = -c + 0.1 * -torch.log(torch.sigmoid(odds))  # Hong et al. 2024, Eq. 6-7: L_SFT + lambda L_OR
        simpo = -torch.log(torch.sigmoid(torch.tensor(2.0 * c - 2.0 * r - 0.5)))  # Meng et al. 2024, Eq. 6
        assert float(orpo_loss(torch.tensor([c]), torch.tensor([r]), 0.1)) == pytest.approx(
            float(orpo), rel=1e-6
        )
        assert float(simpo_loss(torch.tensor([c]), torch.tensor([r]), 2.0, 0.5)) == pytest.approx(
            float(simpo), rel=1e-6
        )


def hand_pairs() -> list[dict]:
    """Two pairs of different lengths: prompt tokens masked, answers supervised."""
    rows = []
    for prompt, chosen, rejected in (
        ([5, 6, 7], [8, 9, 10, 11], [12, 13]),
        ([14, 15], [16, 17], [18, 19, 20, 21, 22]),
    ):
        rows.append(
            {
                "input_ids": prompt + chosen,
                "labels": [-100] * len(prompt) + chosen,
                "rejected_input_ids": prompt + rejected,
                "rejected_labels": [-100] * len(prompt) + rejected,
            }
        )
    return rows


@pytest.fixture(scope="module")
def model():
    return tiny_model(attn_implementation="eager")


def settings() -> BatchSettings:
    return BatchSettings(micro_batch_size=2, cutoff_len=64, pad_id=tiny_tokenizer().pad_token_id)


def answer_logps(model, ids: list[int], labels: list[int]) -> torch.Tensor:
    """Log-probabilities of the answer tokens of one sequence, run alone."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return torch.stack([logp[t - 1, ids[t]] for t in range(1, len(ids)) if labels[t] != -100])


@pytest.mark.parametrize("packed", [False, True])
def test_sequence_logps_equal_each_sequence_run_alone(model, packed):
    rows = hand_pairs()
    batch = collate_preference(rows, settings(), packed=packed)
    with torch.no_grad():
        _, logps = run_logps(model, batch, 4)
    alone = [answer_logps(model, r["input_ids"], r["labels"]) for r in rows]
    alone += [answer_logps(model, r["rejected_input_ids"], r["rejected_labels"]) for r in rows]
    assert logps.sums.tolist() == pytest.approx([float(a.sum()) for a in alone], abs=1e-5)
    assert logps.tokens.tolist() == [len(a) for a in alone]


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_reference_free_objective_on_a_hand_batch(model, loss):
    rows = hand_pairs()
    pref = PreferenceArguments(pref_loss=loss, pref_beta=0.2, simpo_gamma=0.3)
    objective = PairObjective(pref, reference=None)
    with torch.no_grad():
        total, _ = objective(model, collate_preference(rows, settings(), packed=False))
    c = torch.stack([answer_logps(model, r["input_ids"], r["labels"]).mean() for r in rows])
    r = torch.stack([answer_logps(model, r["rejected_input_ids"], r["rejected_labels"]).mean() for r in rows])
    if loss == "orpo":
        log_odds = (c - r) - (torch.log1p(-c.exp()) - torch.log1p(-r.exp()))
        expected = (-c - 0.2 * F.logsigmoid(log_odds)).sum()
    else:
        expected = (-F.logsigmoid(0.2 * (c - r) - 0.3)).sum()
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    metrics = objective.step_metrics()
    assert metrics["rewards/chosen"] == pytest.approx(
        float(0.2 * c.mean()), rel=1e-5
    )  # LF: beta x average logp
    assert metrics["rewards/accuracies"] == float((c > r).float().mean())


def test_ld_alpha_and_pref_ftx(model):
    rows = hand_pairs()
    batch = collate_preference(rows, settings(), packed=False)
    with torch.no_grad():
        _, logps = run_logps(model, batch, 4)
    pieces = [answer_logps(model, r["input_ids"], r["labels"]) for r in rows]
    pieces += [answer_logps(model, r["rejected_input_ids"], r["rejected_labels"]) for r in rows]
    shared = [min(len(pieces[k]), len(pieces[k + 2])) for k in range(2)] * 2
    expected = [float(p[:n].sum() + 0.5 * p[n:].sum()) for p, n in zip(pieces, shared, strict=True)]
    assert logps.length_desensitized(0.5).tolist() == pytest.approx(expected, abs=1e-5)
    assert logps.length_desensitized(1.0).tolist() == pytest.approx(logps.sums.tolist(), abs=1e-6)
    plain = PairObjective(PreferenceArguments(pref_loss="simpo"), None)
    mixed = PairObjective(PreferenceArguments(pref_loss="simpo", pref_ftx=0.7), None)
    with torch.no_grad():
        gap = mixed(model, batch)[0] - plain(model, batch)[0]
    assert float(gap) == pytest.approx(float(-0.7 * sum(p.mean() for p in pieces[:2])), rel=1e-5)


def test_rpo_alpha_is_the_sft_term_weighted_and_differs_from_pref_ftx(model):
    """ms-swift's rpo_alpha: TRL's token-mean NLL (pref_loss sft, checked against TRL), not LF's per-pair mean."""
    batch = collate_preference(hand_pairs(), settings(), packed=False)
    rpo = PairObjective(PreferenceArguments(pref_loss="simpo", rpo_alpha=0.7), None)
    listed = PairObjective(PreferenceArguments(pref_loss=["simpo", "sft"], loss_weights=[1.0, 0.7]), None)
    ftx = PairObjective(PreferenceArguments(pref_loss="simpo", pref_ftx=0.7), None)
    with torch.no_grad():
        assert float(rpo(model, batch)[0]) == pytest.approx(float(listed(model, batch)[0]), rel=1e-6)
        assert float(rpo(model, batch)[0]) != pytest.approx(float(ftx(model, batch)[0]), rel=1e-4)


def test_loss_list_needs_matching_weights():
    from tunesmith.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="loss_weights"):
        PairObjective(
            types.SimpleNamespace(
                **{**vars(PreferenceArguments()), "pref_loss": ["sigmoid", "ipo"], "loss_weights": [1.0]}
            ),
            None,
        )


def test_sync_ref_model_mixes_the_policy_into_the_reference():
    from tunesmith.train.ref_sync import SyncReference

    policy, reference = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = reference.weight.detach().clone()
    trainer = types.SimpleNamespace(model=policy, state=types.SimpleNamespace(global_step=3))
    sync = SyncReference(reference, alpha=0.6, steps=2)
    sync.on_step_end(trainer, {})
    assert torch.equal(reference.weight, before)  # step 3: not a sync step
    trainer.state.global_step = 4
    sync.on_step_end(trainer, {})
    assert torch.allclose(reference.weight, 0.6 * policy.weight + 0.4 * before)


def test_sft_only_loss_options_are_refused():
    from tunesmith.config import load_config
    from tunesmith.recipes.preference import check_supported
    from tunesmith.utils.errors import ConfigError

    options = (
        "label_smoothing_factor=0.1",
        "chunk_loss_size=64",
        "auto_find_batch_size=true",
        "router_aux_loss_coef=0.01",
    )
    for option in options:
        cfg = load_config(
            None, ["model_name_or_path=builtin:tiny", "dataset=x", "stage=dpo", option], validate=False
        )
        with pytest.raises(ConfigError, match=option.split("=")[0]):
            check_supported(cfg)
