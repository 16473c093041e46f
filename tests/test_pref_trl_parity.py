"""Parity with TRL 1.16's DPOTrainer: same conversational pairs, same order, fp32, gradient accumulation 2.

The processed tokens equal TRL's (chat template on prompt + answer); per step the loss, grad norm and
rewards/chosen, rewards/rejected, rewards/margins, logps/* match to 1e-4 relative for sigmoid, ipo, hinge and a
weighted two-loss list, with full fine-tuning and LoRA (reference = the base with adapters disabled).
"""

from __future__ import annotations

import copy

import pytest
from helpers import REFERENCE_ARGS, tiny_model, tiny_tokenizer, write_jsonl

from tunesmith.config import load_config
from tunesmith.data.batching.builder import batch_settings
from tunesmith.data.batching.pairs import build_preference_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.model.reference import freeze
from tunesmith.train.losses.dpo import PairObjective
from tunesmith.train.reference_logps import add_reference_logps
from tunesmith.train.trainer import Trainer

trl = pytest.importorskip("trl")

MICRO, GA, STEPS = 2, 2, 3
KEYS = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen")
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0}


def trl_args(tmp_path) -> dict:
    """The TrainingArguments every TRL reference run here shares: same steps, schedule and order as ours, fp32 CPU."""
    return dict(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=GA,
        max_steps=STEPS,
        learning_rate=1e-3,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        **REFERENCE_ARGS,
        bf16=False,
    )


def pairs() -> list[dict]:
    """TRL conversational preference rows of uneven lengths."""
    words = ["red", "green", "blue", "yellow", "purple", "orange"]
    out = []
    for i in range(MICRO * GA * STEPS):
        w = words[i % len(words)]
        out.append(
            {
                "prompt": [{"role": "user", "content": f"Name a colour like {w}" + " please" * (i % 3)}],
                "chosen": [
                    {"role": "assistant", "content": f"{w.capitalize()} is a colour." + " Yes." * (i % 2)}
                ],
                "rejected": [{"role": "assistant", "content": "No" + " idea" * (i % 4)}],
            }
        )
    return out


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pref")
    path = write_jsonl(tmp / "pairs.jsonl", pairs())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_DATA_CACHE", str(tmp / "cache"))
        cfg = load_config(None, config_overrides(tmp, path, "sigmoid"), validate=False)
        return path, build_datasets(cfg, tiny_tokenizer()).train


def config_overrides(tmp, path, loss) -> list[str]:
    losses = loss if isinstance(loss, str) else ",".join(loss)
    return [
        "model_name_or_path=builtin:tiny",
        f"dataset={path}",
        "stage=dpo",
        "cutoff_len=256",
        f"output_dir={tmp / 'ours'}",
        f"per_device_train_batch_size={MICRO}",
        f"gradient_accumulation_steps={GA}",
        f"max_steps={STEPS}",
        "learning_rate=1e-3",
        "weight_decay=0.0",
        "max_grad_norm=1.0",
        "lr_scheduler_type=linear",
        "logging_steps=1",
        "disable_tqdm=true",
        "disable_shuffling=true",
        "pref_beta=0.1",
        f"pref_loss={losses}",
        "seed=0",
    ]


def run_trl(model, loss, weights, tmp_path, peft: bool, precompute: bool = False):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **trl_args(tmp_path),
        beta=0.1,
        loss_type=[loss] if isinstance(loss, str) else list(loss),
        loss_weights=weights,
        max_length=None,
        disable_tqdm=True,
        precompute_ref_log_probs=precompute,
        seed=0,
    )
    kwargs = {}
    if peft:
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(**LORA)
    else:
        kwargs["ref_model"] = freeze(copy.deepcopy(model))
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(pairs()),
        processing_class=tiny_tokenizer(),
        **kwargs,
    )
    return trainer


def run_ours(model, loss, weights, tmp_path, processed, peft: bool, precompute: bool = False) -> list[dict]:
    path, processed_set = processed
    cfg = load_config(None, config_overrides(tmp_path, path, loss), validate=False)
    cfg.preference.loss_weights = weights
    reference = None if peft else freeze(copy.deepcopy(model))
    if precompute:  # what precompute_ref_log_probs does before training; no reference afterwards
        settings = batch_settings(cfg, tiny_tokenizer())
        processed_set = add_reference_logps(processed_set, model, reference, peft, settings, MICRO)
        reference, peft = None, False
    batcher = build_preference_batcher(cfg, processed_set, tiny_tokenizer())
    objective = PairObjective(cfg.preference, reference, adapter_reference=peft)
    trainer = Trainer(model, cfg.train, batcher, loss_fn=objective)
    state = trainer.train()
    trainer.close()
    return state.log_history


def test_tokens_equal_trl(processed, tmp_path):
    _, ours = processed
    trainer = run_trl(tiny_model(), "sigmoid", None, tmp_path, peft=False)
    theirs = trainer.train_dataset
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine["input_ids"] == ref["prompt_ids"] + ref["chosen_ids"]
        assert mine["rejected_input_ids"] == ref["prompt_ids"] + ref["rejected_ids"]
        assert mine["labels"].count(-100) == len(ref["prompt_ids"])


CASES = [
    ("full", "sigmoid", None),
    ("full", "ipo", None),
    ("full", "hinge", None),
    ("full", ("sigmoid", "sft"), [1.0, 0.5]),
    ("lora", "sigmoid", None),
    ("lora", ("sigmoid", "bco_pair"), [0.7, 0.3]),
    ("lora-precompute", "sigmoid", None),
]


@pytest.mark.parametrize(("kind", "loss", "weights"), CASES)
def test_dpo_matches_trl(processed, tmp_path, kind, loss, weights):
    peft, precompute = kind.startswith("lora"), kind.endswith("precompute")
    base = tiny_model()
    trainer = run_trl(copy.deepcopy(base), loss, weights, tmp_path, peft, precompute)
    mine_model = copy.deepcopy(base)
    if peft:
        from peft import LoraConfig, get_peft_model

        mine_model = get_peft_model(mine_model, LoraConfig(**LORA))
        start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if "lora_" in k}
        missing = set(start) - set(mine_model.state_dict())
        assert not missing
        mine_model.load_state_dict(start, strict=False)
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]
    ours = run_ours(mine_model, loss, weights, tmp_path, processed, peft, precompute)
    assert len(ours) == len(theirs) == STEPS
    for mine, ref in zip(ours, theirs, strict=True):
        for key in KEYS:
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
    assert any(abs(m["rewards/margins"]) > 1e-3 for m in ours)  # training moved the policy off the reference
