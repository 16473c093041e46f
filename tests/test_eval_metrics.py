"""Evaluation on a tiny Qwen2: token-weighted loss, perplexity and token accuracy equal a row-by-row computation
without padding; one metric set per eval dataset; the compute_metrics hook (whole set = batch by batch); and the
recipe end to end: eval lines in the log, rotation and load_best_model_at_end on real eval metrics."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from helpers import tiny_model

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe
from tunesmith.train.evaluation import Evaluator, load_hook
from tunesmith.utils.errors import ConfigError


def _rows(n: int, seed: int) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(4, 20, (1,), generator=g))
        ids = torch.randint(5, 200, (length,), generator=g).tolist()
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def _args(**kw):
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", *[f"{k}={v}" for k, v in kw.items()]])
    return cfg.train


def _reference(model, rows):
    """Token-weighted loss and accuracy computed one unpadded row at a time."""
    ce, correct, tokens = 0.0, 0, 0
    with torch.no_grad():
        for r in rows:
            logits = model(torch.tensor([r["input_ids"]])).logits[0, :-1]
            target = torch.tensor(r["labels"][1:])
            valid = target != -100
            ce += float(F.cross_entropy(logits[valid], target[valid], reduction="sum"))
            correct += int((logits[valid].argmax(-1) == target[valid]).sum())
            tokens += int(valid.sum())
    return ce / tokens, correct / tokens, tokens


def test_loss_perplexity_accuracy_equal_unpadded_reference():
    model = tiny_model().train()  # evaluation switches dropout off and restores train mode
    rows = _rows(7, 0)
    metrics = Evaluator({"eval": rows}, _args(per_device_eval_batch_size=3), pad_id=0).evaluate(model)
    loss, accuracy, tokens = _reference(model.eval(), rows)
    assert metrics["eval_tokens"] == tokens
    assert metrics["eval_loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert metrics["eval_accuracy"] == pytest.approx(accuracy)
    batch_of_one = Evaluator({"eval": rows}, _args(per_device_eval_batch_size=1), pad_id=0).evaluate(model)
    assert batch_of_one["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-5)


def test_each_dataset_gets_its_own_metrics():
    model = tiny_model()
    sets = {"alpha": _rows(4, 1), "beta": _rows(5, 2)}
    both = Evaluator(sets, _args(), pad_id=0).evaluate(model)
    for name, rows in sets.items():
        alone = Evaluator({"eval": rows}, _args(), pad_id=0).evaluate(model)
        assert both[f"eval_{name}_loss"] == pytest.approx(alone["eval_loss"])
    assert both["eval_alpha_loss"] != both["eval_beta_loss"]
    together = Evaluator({"eval": sets["alpha"] + sets["beta"]}, _args(), pad_id=0).evaluate(model)
    assert both["eval_loss"] == pytest.approx(together["eval_loss"], rel=1e-5)  # token-weighted over all sets
    assert both["eval_accuracy"] == pytest.approx(together["eval_accuracy"])


def _exact_match(pred, compute_result: bool = True):
    """A user metric: share of rows whose supervised tokens are all predicted right (supports batch mode)."""
    state = _exact_match.__dict__.setdefault("acc", [0, 0])
    valid = pred.label_ids != -100
    right = ((pred.predictions == pred.label_ids) | ~valid).all(axis=1)
    state[0] += int(right.sum())
    state[1] += len(right)
    result = {"exact_match": state[0] / state[1], "saw_inputs": float(pred.inputs is not None)}
    if compute_result:
        _exact_match.__dict__["acc"] = [0, 0]
    return result


def test_compute_metrics_hook_whole_set_equals_batch_by_batch(monkeypatch):
    module = types.ModuleType("user_metrics")
    module.exact_match = _exact_match
    monkeypatch.setitem(sys.modules, "user_metrics", module)
    hook = load_hook("user_metrics:exact_match")
    model, rows = tiny_model(), _rows(6, 3)
    whole = Evaluator({"eval": rows}, _args(per_device_eval_batch_size=2), 0, hook).evaluate(model)
    batched = Evaluator(
        {"eval": rows},
        _args(per_device_eval_batch_size=2, batch_eval_metrics="true", include_for_metrics="inputs"),
        0,
        hook,
    ).evaluate(model)
    assert whole["eval_exact_match"] == batched["eval_exact_match"]
    assert whole["eval_saw_inputs"] == 0.0 and batched["eval_saw_inputs"] == 1.0
    loss_only = Evaluator({"eval": rows}, _args(prediction_loss_only="true"), 0, hook).evaluate(model)
    assert "eval_exact_match" not in loss_only and "eval_loss" in loss_only
    with pytest.raises(ConfigError, match="module:function"):
        load_hook("no_colon")


def test_bf16_full_eval_changes_precision_not_weights():
    model, rows = tiny_model(), _rows(4, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fp32 = Evaluator({"eval": rows}, _args(), 0).evaluate(model)["eval_loss"]
    bf16 = Evaluator({"eval": rows}, _args(bf16_full_eval="true"), 0).evaluate(model)["eval_loss"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.05)
    assert all(model.state_dict()[k].equal(v) for k, v in before.items())


def test_recipe_evaluates_rotates_and_loads_best(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    overrides = [
        "model_name_or_path=builtin:tiny",
        "dataset=demo",
        "dataset_dir=builtin:demo",
        "stage=sft",
        "cutoff_len=64",
        "per_device_train_batch_size=4",
        "max_steps=6",
        "learning_rate=3e-3",
        "greater_is_better=true",  # on eval_loss: the best is the first evaluation, so not the last
        "logging_steps=1",
        "val_size=0.1",
        "eval_strategy=steps",
        "eval_steps=2",
        "save_steps=2",
        "save_total_limit=1",
        "load_best_model_at_end=true",
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
    ]
    run_recipe(load_config(None, overrides))
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in log if "eval_loss" in r}
    assert sorted(evals) == [2, 4, 6]
    assert evals[2] > evals[4] > evals[6]
    best_step = 2
    kept = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert kept == [best_step, 6]  # limit 1 still keeps the best and the newest
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["best_global_step"] == best_step and state["best_metric"] == evals[best_step]
    final = safetensors.torch.load_file(out / "model.safetensors")
    best = safetensors.torch.load_file(out / f"checkpoint-{best_step}" / "model.safetensors")
    assert all(final[k].equal(v) for k, v in best.items() if k in final)
    last = safetensors.torch.load_file(out / "checkpoint-6" / "model.safetensors")
    assert not all(final[k].equal(v) for k, v in last.items() if k in final)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_loss" in h] == [2, 4, 6]
