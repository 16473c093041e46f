"""KTO (stage kto): parity with TRL 1.16's KTOTrainer on the same unpaired conversational examples, in order,
fp32, gradient accumulation 2 (tokens; loss, grad norm, rewards/*, logps/*, kl per step; full and LoRA), and the
LLaMA-Factory `kto_tag` layout reaching the same rows."""

from __future__ import annotations

import copy

import pytest
from helpers import tiny_model, tiny_tokenizer, write_json, write_jsonl
from test_pref_trl_parity import LORA, STEPS, config_overrides, pairs, trl_args

from tunesmith.config import load_config
from tunesmith.data.batching.pairs import build_preference_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.model.reference import freeze
from tunesmith.train.losses.kto import KTOObjective
from tunesmith.train.trainer import Trainer

pytest.importorskip("trl")
KEYS = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "kl")


def examples() -> list[dict]:
    """TRL unpaired rows: every micro-batch holds one desirable and one undesirable example."""
    return [
        {
            "prompt": p["prompt"],
            "completion": p["chosen"] if i % 2 == 0 else p["rejected"],
            "label": i % 2 == 0,
        }
        for i, p in enumerate(pairs())
    ]


def overrides(tmp, path) -> list[str]:
    return [
        *config_overrides(tmp, path, "sigmoid"),
        "stage=kto",
        "kto_chosen_weight=1.0",
        "undesirable_weight=1.5",
    ]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kto")
    path = write_jsonl(tmp / "kto.jsonl", examples())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_DATA_CACHE", str(tmp / "cache"))
        cfg = load_config(None, overrides(tmp, path), validate=False)
        return path, build_datasets(cfg, tiny_tokenizer()).train


def run_trl(model, tmp_path, peft: bool):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(
        **trl_args(tmp_path),
        beta=0.1,
        desirable_weight=1.0,
        undesirable_weight=1.5,
        max_length=None,
        disable_tqdm=True,
        seed=0,
    )
    kwargs = {}
    if peft:
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(**LORA)
    else:
        kwargs["ref_model"] = freeze(copy.deepcopy(model))
    return KTOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples()),
        processing_class=tiny_tokenizer(),
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_kto_matches_trl(processed, tmp_path, kind):
    path, rows = processed
    peft = kind == "lora"
    base = tiny_model()
    trainer = run_trl(copy.deepcopy(base), tmp_path, peft)
    for mine, ref in zip(rows, trainer.train_dataset, strict=True):
        assert mine["input_ids"] == ref["prompt_ids"] + ref["completion_ids"]
        assert mine["kto_tag"] == ref["label"]
    model = copy.deepcopy(base)
    if peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(**LORA))
        model.load_state_dict(
            {k: v.clone() for k, v in trainer.model.state_dict().items() if "lora_" in k}, strict=False
        )
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]
    cfg = load_config(None, overrides(tmp_path, path), validate=False)
    reference = None if peft else freeze(copy.deepcopy(model))
    objective = KTOObjective(cfg.preference, reference, adapter_reference=peft)
    ours = Trainer(
        model,
        cfg.train,
        build_preference_batcher(cfg, rows, tiny_tokenizer(), pairs=False),
        loss_fn=objective,
    )
    log = ours.train().log_history
    ours.close()
    assert len(log) == len(theirs) == STEPS
    for mine, ref in zip(log, theirs, strict=True):
        for key in KEYS:
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key


def test_llama_factory_kto_tag_layout(processed, tmp_path, monkeypatch):
    """A dataset_info.json sharegpt entry with a kto_tag column gives the same processed rows as TRL's layout."""
    _, trl_rows = processed
    rows = []
    for ex in examples():
        turns = [{"from": "human", "value": ex["prompt"][0]["content"]}]
        turns.append({"from": "gpt", "value": ex["completion"][0]["content"]})
        rows.append({"conversations": turns, "tag": ex["label"]})
    write_jsonl(tmp_path / "lf.jsonl", rows)
    entry = {
        "file_name": "lf.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "kto_tag": "tag"},
    }
    write_json(tmp_path / "dataset_info.json", {"lf_kto": entry})
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, [*overrides(tmp_path, "lf_kto"), f"dataset_dir={tmp_path}"], validate=False)
    lf = build_datasets(cfg, tiny_tokenizer()).train
    assert lf["input_ids"] == trl_rows["input_ids"] and lf["kto_tag"] == trl_rows["kto_tag"]


def test_ms_swift_messages_and_label_layout(processed, tmp_path, monkeypatch):
    """ms-swift's KTO rows (`messages` ending with the answer, a `label` column) read by path, as TRL's layout."""
    _, trl_rows = processed
    rows = [{"messages": [*ex["prompt"], *ex["completion"]], "label": ex["label"]} for ex in examples()]
    path = write_jsonl(tmp_path / "swift_kto.jsonl", rows)
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, overrides(tmp_path, path), validate=False)
    swift = build_datasets(cfg, tiny_tokenizer()).train
    assert swift["input_ids"] == trl_rows["input_ids"] and swift["kto_tag"] == trl_rows["kto_tag"]
