"""Preference data: every accepted layout (LLaMA-Factory ranking alpaca/sharegpt, TRL explicit and implicit
prompt, ms-swift rejected_response / rejected_messages) gives the same processed pairs; LF's pair truncation;
`tunesmith data --export` shows both answers."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_tokenizer, write_json, write_jsonl

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.data.pairwise import truncate_pair
from tunesmith.data.pipeline import build_datasets
from tunesmith.utils.errors import ConfigError

ROWS = [("What is 2+2?", "4", "5 or so"), ("Name a colour.", "Blue.", "A dog.")]
KEYS = ("input_ids", "labels", "rejected_input_ids", "rejected_labels")


def layouts(tmp) -> dict[str, tuple[str, dict | None]]:
    """name -> (dataset value, dataset_info.json entry or None), all holding ROWS."""
    user = lambda q: {"role": "user", "content": q}  # noqa: E731
    bot = lambda a: {"role": "assistant", "content": a}  # noqa: E731
    files = {
        "lf_alpaca": [{"instruction": q, "chosen": c, "rejected": r} for q, c, r in ROWS],
        "lf_sharegpt": [
            {
                "conversations": [{"from": "human", "value": q}],
                "chosen": {"from": "gpt", "value": c},
                "rejected": {"from": "gpt", "value": r},
            }
            for q, c, r in ROWS
        ],
        "trl_explicit": [{"prompt": [user(q)], "chosen": [bot(c)], "rejected": [bot(r)]} for q, c, r in ROWS],
        "trl_implicit": [{"chosen": [user(q), bot(c)], "rejected": [user(q), bot(r)]} for q, c, r in ROWS],
        "swift_response": [{"messages": [user(q), bot(c)], "rejected_response": r} for q, c, r in ROWS],
        "swift_messages": [
            {"messages": [user(q), bot(c)], "rejected_messages": [user(q), bot(r)]} for q, c, r in ROWS
        ],
        "trl_standard": [{"prompt": q, "chosen": c, "rejected": r} for q, c, r in ROWS],
    }
    registry = {
        "lf_alpaca": {"file_name": "lf_alpaca.jsonl", "ranking": True},
        "lf_sharegpt": {"file_name": "lf_sharegpt.jsonl", "formatting": "sharegpt", "ranking": True},
    }
    for name, rows in files.items():
        write_jsonl(tmp / f"{name}.jsonl", rows)
    write_json(tmp / "dataset_info.json", registry)
    return {name: name if name in registry else str(tmp / f"{name}.jsonl") for name in files}


def process(tmp, dataset: str, *extra: str):
    cfg = load_config(
        None,
        ["model_name_or_path=builtin:tiny", f"dataset={dataset}", f"dataset_dir={tmp}", "stage=dpo", *extra],
        validate=False,
    )
    return build_datasets(cfg, tiny_tokenizer()).train


def test_every_layout_gives_the_same_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    names = layouts(tmp_path)
    expected = process(tmp_path, names.pop("trl_explicit"))
    assert tiny_tokenizer().decode(expected[0]["rejected_input_ids"]).endswith("5 or so<|im_end|>\n")
    for name, dataset in names.items():
        got = process(tmp_path, dataset)
        for key in KEYS:
            assert got[key] == expected[key], (name, key)


def test_pair_truncation_shares_the_answer_budget():
    prompt, chosen, rejected = list(range(30)), list(range(100, 120)), list(range(200, 206))
    p, c, r = truncate_pair(prompt, chosen, rejected, 32)
    # LF: the answer budget is sized on the longer answer (32 x 20 / 50 = 12), the prompt gets the rest
    assert (len(p), len(c), len(r)) == (20, 12, 6)
    assert p == prompt[:20] and c == chosen[:12] and r == rejected


def test_sft_masking_options_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    names = layouts(tmp_path)
    with pytest.raises(ConfigError, match="train_on_prompt"):
        process(tmp_path, names["trl_explicit"], "train_on_prompt=true")


def test_export_shows_both_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    names = layouts(tmp_path)
    out = tmp_path / "pairs.jsonl"
    args = ["data", "model_name_or_path=builtin:tiny", f"dataset={names['swift_response']}", "stage=dpo"]
    assert main([*args, "--export", str(out)]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["supervised_text"] == "4<|im_end|>\n"
    assert first["rejected_supervised_text"] == "5 or so<|im_end|>\n"
