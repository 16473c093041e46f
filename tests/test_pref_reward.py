"""Reward models (stage rm): parity with TRL 1.16's RewardTrainer (tokens; loss, grad norm, accuracy, margin,
mean_reward per step; full and LoRA, gradient accumulation 2, center_rewards_coefficient), and `tunesmith rm` (with
evaluation) writing a model that loads as AutoModelForSequenceClassification and scores text."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers import tiny_model, tiny_tokenizer, write_jsonl
from test_pref_trl_parity import STEPS, config_overrides, pairs, trl_args
from transformers import AutoModelForSequenceClassification

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.data.batching.pairs import build_preference_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.train.losses.reward import RewardObjective
from tunesmith.train.trainer import Trainer

pytest.importorskip("trl")
KEYS = ("loss", "grad_norm", "accuracy", "margin", "mean_reward")


def reward_model(seed: int = 0) -> torch.nn.Module:
    """The tiny causal LM's decoder under a one-output score head (as load_reward_model builds it)."""
    causal = tiny_model()
    config = copy.deepcopy(causal.config)
    config.num_labels, config.pad_token_id = 1, tiny_tokenizer().pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    model.model.load_state_dict(causal.model.state_dict())
    return model


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    path = write_jsonl(tmp / "pairs.jsonl", pairs())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_DATA_CACHE", str(tmp / "cache"))
        cfg = load_config(None, [*config_overrides(tmp, path, "sigmoid"), "stage=rm"], validate=False)
        return path, build_datasets(cfg, tiny_tokenizer()).train


def run_trl(model, tmp_path, center):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        **trl_args(tmp_path),
        max_length=None,
        center_rewards_coefficient=center,
        disable_tqdm=True,
        seed=0,
    )
    return RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs()), processing_class=tiny_tokenizer()
    )


def lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return get_peft_model(model, config)


@pytest.mark.parametrize(("kind", "center"), [("full", None), ("full", 0.01), ("lora", None)])
def test_reward_matches_trl(processed, tmp_path, kind, center):
    path, rows = processed
    base = reward_model()
    if kind == "lora":
        base = lora(base)
    trainer = run_trl(copy.deepcopy(base), tmp_path, center)
    theirs_rows = trainer.train_dataset
    for mine, ref in zip(rows, theirs_rows, strict=True):
        assert mine["input_ids"] == ref["chosen_ids"]
        assert mine["rejected_input_ids"] == ref["rejected_ids"]
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]
    cfg = load_config(None, [*config_overrides(tmp_path, path, "sigmoid"), "stage=rm"], validate=False)
    cfg.preference.center_rewards_coefficient = center
    model = copy.deepcopy(base)
    ours = Trainer(
        model,
        cfg.train,
        build_preference_batcher(cfg, rows, tiny_tokenizer()),
        loss_fn=RewardObjective(cfg.preference, model),
    )
    log = ours.train().log_history
    ours.close()
    assert len(log) == len(theirs) == STEPS
    for mine, ref in zip(log, theirs, strict=True):
        for key in KEYS:
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key


def test_rm_command_saves_a_sequence_classifier(processed, tmp_path, monkeypatch):
    path, _ = processed
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rm"
    code = main(
        [
            "rm",
            "model_name_or_path=builtin:tiny",
            f"dataset={path}",
            "cutoff_len=128",
            "per_device_train_batch_size=4",
            "max_steps=2",
            "logging_steps=1",
            "learning_rate=1e-3",
            f"output_dir={out}",
            "report_to=none",
            "save_strategy=no",
            "disable_tqdm=true",
            "val_size=0.25",
            "eval_strategy=steps",
            "eval_steps=2",
        ]
    )
    assert code == 0
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert {"accuracy", "margin", "mean_reward"} <= set(log[-2])
    assert {"eval_loss", "eval_accuracy", "eval_margin"} <= set(
        log[-1]
    )  # the stage's metrics on the eval set
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = tiny_tokenizer()
    batch = tok(["Red is a colour.", "No idea"], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()


def test_lora_on_the_reward_model_with_all_linear_targets_and_checkpointing():
    """LLaMA-Factory's reward example (lora_target: all, gradient checkpointing on by its default) builds."""
    from tunesmith.config import load_config
    from tunesmith.model import load_tokenizer, prepare_for_training
    from tunesmith.model.value_head import load_reward_model

    cfg = load_config(
        None,
        [
            "--model",
            "builtin:tiny",
            "--stage",
            "rm",
            "--finetuning_type",
            "lora",
            "--lora_target",
            "all",
            "--plot_loss",
            "true",
            "--dataset",
            "demo",
            "--dataset_dir",
            "builtin:demo",
            "report_to=none",
        ],
    )
    assert cfg.dialect.name == "lf" and cfg.train.gradient_checkpointing
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_reward_model(cfg, tokenizer), cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any(".score." in n for n in trainable)
