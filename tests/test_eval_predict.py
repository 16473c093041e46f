"""predict_with_generate: BLEU-4 / ROUGE on hand-computed examples, generated_predictions.jsonl equals a greedy
decode done by hand on a tiny Qwen2, beams are honoured, and the recipe writes predictions after training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import tiny_model

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe
from tunesmith.train.predict import bleu4, predict, rouge_l, rouge_n, scores, split_example, words


def test_bleu_and_rouge_by_hand():
    ref, hyp = words("the cat sat on the mat"), words("the cat sat on mat")
    # precisions 5/5, 3/4, 2/3, 1/2; brevity penalty exp(1 - 6/5)
    assert bleu4(hyp, ref) == pytest.approx(math.exp(-0.2) * (1 * 0.75 * (2 / 3) * 0.5) ** 0.25)
    assert rouge_n(hyp, ref, 1) == pytest.approx(10 / 11)  # P 5/5, R 5/6
    assert rouge_n(hyp, ref, 2) == pytest.approx(2 * 0.75 * 0.6 / 1.35)  # P 3/4, R 3/5
    assert rouge_l(hyp, ref) == pytest.approx(10 / 11)  # LCS 5
    assert rouge_l(words("b a"), words("a b c")) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert words("我爱你, ok") == ["我", "爱", "你", ",", "ok"]
    assert scores(["a b c d"], ["a b c d"]) == {
        "bleu-4": 100.0,
        "rouge-1": 100.0,
        "rouge-2": 100.0,
        "rouge-l": 100.0,
    }
    assert scores(["x"], ["a b"])["rouge-1"] == 0.0


def _greedy(model, prompt: list[int], steps: int, eos: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == eos:
                break
    return ids[len(prompt) :]


def test_predictions_file_matches_hand_greedy_decode(tmp_path, tokenizer):
    model = tiny_model()
    rows = []
    for prompt, answer in (("hello there", " general"), ("one two", " three four")):
        p, a = tokenizer(prompt)["input_ids"], tokenizer(answer)["input_ids"]
        rows.append({"input_ids": p + a, "labels": [-100] * len(p) + a})
    assert split_example(rows[0])[0] == tokenizer("hello there")["input_ids"]
    result = predict(model, tokenizer, rows, tmp_path, max_new_tokens=8)
    lines = [json.loads(line) for line in (tmp_path / "generated_predictions.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["label"]) for r in lines] == [
        ("hello there", " general"),
        ("one two", " three four"),
    ]
    for row, line in zip(rows, lines, strict=True):
        expected = _greedy(model, split_example(row)[0], 8, tokenizer.eos_token_id)
        assert line["prediction"] == tokenizer.decode(expected, skip_special_tokens=True)
    saved = json.loads((tmp_path / "predict_results.json").read_text())
    assert (
        saved
        == result
        == {
            f"predict_{k}": v
            for k, v in scores([r["prediction"] for r in lines], [r["label"] for r in lines]).items()
        }
    )
    beams = predict(model, tokenizer, rows, tmp_path / "beams", num_beams=3, max_new_tokens=8)
    assert set(beams) == set(result)


def test_recipe_writes_predictions_after_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    overrides = [
        "model_name_or_path=builtin:tiny",
        "dataset=demo",
        "dataset_dir=builtin:demo",
        "stage=sft",
        "cutoff_len=64",
        "per_device_train_batch_size=4",
        "max_steps=2",
        "val_size=3",
        "eval_strategy=steps",
        "eval_steps=2",
        "predict_with_generate=true",
        "eval_num_beams=2",
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
    ]
    run_recipe(load_config(None, overrides))
    lines = (out / "generated_predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(set(json.loads(x)) == {"prompt", "label", "prediction"} for x in lines)
    assert set(json.loads((out / "predict_results.json").read_text())) == {
        "predict_bleu-4",
        "predict_rouge-1",
        "predict_rouge-2",
        "predict_rouge-l",
    }


def test_do_predict_reports_the_loss_of_the_final_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    overrides = [
        "model_name_or_path=builtin:tiny",
        "dataset=demo",
        "dataset_dir=builtin:demo",
        "stage=sft",
        "cutoff_len=64",
        "max_steps=2",
        "val_size=5",
        "eval_strategy=steps",
        "eval_steps=2",
        "do_predict=true",  # no test split here: predicts on the eval set
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
    ]
    run_recipe(load_config(None, overrides))
    result = json.loads((out / "predict_results.json").read_text())
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    final_eval = next(r for r in log if r.get("step") == 2 and "eval_loss" in r)
    assert result["predict_loss"] == pytest.approx(final_eval["eval_loss"])
    assert result["predict_perplexity"] == pytest.approx(math.exp(result["predict_loss"]))
