"""Arguments that used to do nothing, checked on real tiny training runs (one run per module, each assertion fails
if its argument is ignored): input-token counting, do_eval at the end, full bf16 eval, save_safetensors false,
batch-building threads, and an evaluation-only run (do_train false) on the trained model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.recipes import run_recipe
from tunesmith.train.evaluation import Evaluator

COMMON = [
    "dataset=demo",
    "dataset_dir=builtin:demo",
    "cutoff_len=64",
    "per_device_train_batch_size=4",
    "logging_steps=1",
    "disable_tqdm=true",
    "learning_rate=1e-3",
]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "trainer_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def data_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("noop") / "out"
    cfg = load_config(
        None,
        [
            "model_name_or_path=builtin:tiny",
            *COMMON,
            "max_steps=3",
            "val_size=8",
            "do_eval=true",  # eval_strategy stays "no": evaluate once at the end, as HF scripts do
            "include_num_input_tokens_seen=non_padding",
            "save_safetensors=false",
            "dataloader_num_workers=2",
            f"output_dir={out}",
        ],
    )
    run_recipe(cfg)
    return out


def test_input_tokens_are_counted_as_hf_does(trained):
    steps = [r for r in rows(trained) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:  # padded micro-batches: the model is fed more tokens than it is scored on
        assert r["input_tokens"] > r["tokens"] > 0
        assert r["tokens_per_second"] / r["label_tokens_per_second"] == pytest.approx(
            r["input_tokens"] / r["tokens"]
        )
    seen = [r["num_input_tokens_seen"] for r in steps]
    assert seen == [sum(r["input_tokens"] for r in steps[: i + 1]) for i in range(3)]


def test_do_eval_evaluates_at_the_end(trained):
    evals = [r for r in rows(trained) if "eval_loss" in r]
    assert len(evals) == 1 and evals[0]["step"] == 3


def test_save_safetensors_false_also_for_the_final_model(trained):
    assert (trained / "pytorch_model.bin").is_file()
    assert not list(trained.glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(trained)
    assert torch.isfinite(next(model.parameters())).all()


def test_do_train_false_evaluates_the_loaded_model(trained, tmp_path):
    out = tmp_path / "eval_only"
    cfg = load_config(
        None,
        [
            f"model_name_or_path={trained}",
            *COMMON,
            "val_size=8",
            "do_train=false",
            "do_eval=true",
            f"output_dir={out}",
        ],
    )
    run_recipe(cfg)
    metrics = json.loads((out / "eval_results.json").read_text())
    trained_eval = next(r for r in rows(trained) if "eval_loss" in r)
    assert metrics["eval_loss"] == pytest.approx(trained_eval["eval_loss"], rel=1e-5)
    assert not (out / "config.json").exists()  # nothing trained, nothing saved


def test_do_train_false_needs_no_training_set(trained, tmp_path):
    def eval_loss(name: str, *data: str) -> float:
        base = [f"model_name_or_path={trained}", *[a for a in COMMON if not a.startswith("dataset=")]]
        cfg = load_config(None, [*base, *data, "do_eval=true", f"output_dir={tmp_path / name}"])
        run_recipe(cfg)
        return json.loads((tmp_path / name / "eval_results.json").read_text())["eval_loss"]

    alone = eval_loss("alone", "eval_dataset=demo", "do_train=false")  # no `dataset`: evaluation needs none
    assert alone == eval_loss("with_train", "dataset=demo", "eval_dataset=demo", "do_train=false")
    # do_train unset and only evaluation data (the peers' predict-only configs): evaluation only, as asked
    assert alone == eval_loss("implied", "eval_dataset=demo")
    assert not (tmp_path / "implied" / "config.json").exists()


def test_full_bf16_eval_casts_the_weights_and_restores_them(trained):
    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sets = {"eval": [{"input_ids": list(range(5, 40)), "labels": list(range(5, 40))}]}

    def evaluate(model, *overrides):
        args = load_config(None, ["model_name_or_path=builtin:tiny", *overrides]).train
        return Evaluator(sets, args, pad_id=0).evaluate(model)["eval_loss"]

    cast = evaluate(model, "bf16_full_eval=true")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights back, bit for bit
    bf16 = copy.deepcopy(model).to(torch.bfloat16)  # what HF's full bf16 eval runs
    assert cast == pytest.approx(evaluate(bf16), abs=1e-9)
    assert cast != pytest.approx(evaluate(model), abs=1e-6)  # not the fp32 result
