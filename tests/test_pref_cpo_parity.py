"""Parity with TRL 1.16's CPOTrainer (trl.experimental.cpo): the same tiny model trained on the same token rows
(TRL's own tokenization of the pairs), fp32, gradient accumulation 2. Per step the loss, grad norm, rewards/*,
logps/* and nll_loss match to 1e-4 relative for loss_type sigmoid (with label smoothing), simpo, hinge, ipo and
alphapo (AlphaPO's reward shape), with cpo_alpha != 0 so the NLL term counts.
"""

from __future__ import annotations

import copy

import pytest
from helpers import tiny_model, tiny_tokenizer
from test_pref_trl_parity import STEPS, config_overrides, pairs, trl_args

from tunesmith.config import load_config
from tunesmith.data.batching.pairs import build_preference_batcher
from tunesmith.train.losses.cpo import CPOObjective
from tunesmith.train.trainer import Trainer

pytest.importorskip("trl")

KEYS = (
    "loss",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
# (TRL loss_type, tunesmith pref_loss, TRL's CPOConfig options beyond beta)
CASES = [
    ("sigmoid", "cpo", {"cpo_alpha": 0.5, "label_smoothing": 0.1}),
    ("simpo", "cpo_simpo", {"cpo_alpha": 1.0, "simpo_gamma": 0.7}),
    ("hinge", "cpo_hinge", {"cpo_alpha": 0.3}),
    ("ipo", "cpo_ipo", {"cpo_alpha": 0.2}),
    ("alphapo", "cpo_simpo", {"alpha": 0.3, "simpo_gamma": 0.5}),  # TRL: simpo with cpo_alpha 0
]
OURS = {"label_smoothing": "dpo_label_smoothing", "alpha": "alphapo_alpha"}


def trl_trainer(model, loss_type: str, options: dict, tmp_path):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = CPOConfig(
        **trl_args(tmp_path), beta=0.1, loss_type=loss_type, max_length=256, disable_tqdm=True, **options
    )
    return CPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs()), processing_class=tiny_tokenizer()
    )


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """TRL's token rows (its CPO tokenization appends EOS after the template's end of turn) in tunesmith's pair
    layout, so both sides train on the very same tokens."""
    from datasets import Dataset

    ds = trl_trainer(tiny_model(), "sigmoid", {}, tmp_path_factory.mktemp("tok")).train_dataset
    return Dataset.from_dict(
        {
            "input_ids": ds["chosen_input_ids"],
            "labels": ds["chosen_labels"],
            "rejected_input_ids": ds["rejected_input_ids"],
            "rejected_labels": ds["rejected_labels"],
        }
    )


def run_ours(model, pref_loss: str, options: dict, rows, tmp_path) -> list[dict]:
    extra = [f"{OURS.get(k, k)}={v}" for k, v in options.items()]
    if "cpo_alpha" not in options:
        extra.append("cpo_alpha=0")
    cfg = load_config(None, [*config_overrides(tmp_path, "unused.jsonl", pref_loss), *extra], validate=False)
    objective = CPOObjective(cfg.preference)
    trainer = Trainer(
        model, cfg.train, build_preference_batcher(cfg, rows, tiny_tokenizer()), loss_fn=objective
    )
    state = trainer.train()
    trainer.close()
    return state.log_history


@pytest.mark.parametrize(("loss_type", "pref_loss", "options"), CASES, ids=[c[0] for c in CASES])
def test_cpo_matches_trl(rows, tmp_path, loss_type, pref_loss, options):
    base = tiny_model()
    trainer = trl_trainer(copy.deepcopy(base), loss_type, options, tmp_path)
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]
    ours = run_ours(copy.deepcopy(base), pref_loss, options, rows, tmp_path)
    assert len(ours) == len(theirs) == STEPS
    keys = (*KEYS, "nll_loss") if options.get("cpo_alpha") else KEYS
    for mine, ref in zip(ours, theirs, strict=True):
        for key in keys:
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
    assert ours[-1]["rewards/margins"] != pytest.approx(ours[0]["rewards/margins"], rel=1e-3)  # it trained
