"""Masking rules and the cutoff_len truncation policy, on exact ids and labels."""

from __future__ import annotations

import logging

import pytest
from helpers import write_json

from tunesmith.config import load_config
from tunesmith.data.pipeline import build_datasets
from tunesmith.data.tokenize import IGNORE_INDEX, infer_seqlen, supervise
from tunesmith.utils.errors import DataError

X = IGNORE_INDEX
# two turns: prompt ids in the 100s, answer ids in the 200s
TURNS = [([101, 102, 103], [201, 202]), ([111, 112], [211, 212, 213])]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def test_every_answer_is_supervised_by_default():
    ids, labels = supervise(TURNS, 100, train_on_prompt=False, mask_history=False)
    assert ids == [101, 102, 103, 201, 202, 111, 112, 211, 212, 213]
    assert labels == [X, X, X, 201, 202, X, X, 211, 212, 213]


def test_train_on_prompt_supervises_everything():
    ids, labels = supervise(TURNS, 100, train_on_prompt=True, mask_history=False)
    assert labels == ids


def test_mask_history_supervises_only_the_last_answer():
    ids, labels = supervise(TURNS, 100, train_on_prompt=False, mask_history=True)
    assert ids == [101, 102, 103, 201, 202, 111, 112, 211, 212, 213]
    assert labels == [X, X, X, X, X, X, X, 211, 212, 213]


@pytest.mark.parametrize(
    ("source", "target", "cutoff", "expected"),
    [
        (10, 3, 8, (5, 3)),  # short answer (2*3 < 8): kept whole, the prompt takes the rest
        (3, 10, 8, (3, 5)),  # short prompt (2*3 < 8): kept whole, the answer takes the rest
        (10, 10, 8, (4, 4)),  # both long: split in proportion
        (30, 10, 8, (6, 2)),  # 8 * 10/40 = 2 for the answer
        (2, 2, 8, (2, 2)),  # fits: untouched
    ],
)
def test_infer_seqlen_budget_split(source, target, cutoff, expected):
    assert infer_seqlen(source, target, cutoff) == expected


def test_truncation_keeps_the_supervised_part_and_stops_at_cutoff():
    # cutoff 7: turn 1 (3+2) fits; turn 2 gets the 2 tokens left: infer_seqlen(2, 3, 2) splits in proportion,
    # int(2 * 3/5) = 1 answer token and 1 prompt token
    ids, labels = supervise(TURNS, 7, train_on_prompt=False, mask_history=False)
    assert ids == [101, 102, 103, 201, 202, 111, 211]
    assert labels == [X, X, X, 201, 202, X, 211]


def test_mask_history_truncation_gives_the_last_turn_the_budget_first():
    ids, labels = supervise(TURNS, 6, train_on_prompt=False, mask_history=True)
    # last turn (2+3=5) fits whole; the first turn gets 1 token: infer_seqlen(3, 2, 1) -> (1, 0)
    assert ids == [101, 111, 112, 211, 212, 213]
    assert labels == [X, X, X, 211, 212, 213]


def _cfg(tmp_path, rows, **args):
    write_json(tmp_path / "d.json", rows)
    base = ["model=builtin:tiny", f"dataset={tmp_path / 'd.json'}", "template=empty"]
    return load_config(None, base + [f"{k}={v}" for k, v in args.items()])


def test_examples_with_nothing_supervised_are_dropped_and_counted(tmp_path, tokenizer, caplog):
    long_prompt = "word " * 60
    rows = [
        {"instruction": "Hi", "output": "Hello"},
        {"instruction": long_prompt, "output": ""},  # empty answer: nothing to learn, dropped at any length
        {"instruction": "Yo", "output": "Hey there"},
    ]
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        bundle = build_datasets(_cfg(tmp_path, rows, cutoff_len=16), tokenizer)
    assert len(bundle.train) == 2
    assert bundle.stats["dropped"] == 1 and bundle.stats["examples"] == 2
    assert "dropped 1 example(s)" in caplog.text
    supervised = sum(1 for row in bundle.train for t in row["labels"] if t != X)
    assert bundle.stats["supervised_tokens"] == supervised
    assert bundle.stats["tokens"] == sum(len(row["input_ids"]) for row in bundle.train)


def test_cutoff_len_truncates_long_examples_but_keeps_answer(tmp_path, tokenizer):
    rows = [{"instruction": "word " * 200, "output": "The answer is four."}]
    bundle = build_datasets(_cfg(tmp_path, rows, cutoff_len=32), tokenizer)
    row = bundle.train[0]
    answer = tokenizer.encode("The answer is four.", add_special_tokens=False)
    assert len(row["input_ids"]) == 32
    assert row["input_ids"][-len(answer) :] == answer  # the short answer survives whole
    assert [t for t in row["labels"] if t != X] == answer


def test_all_dropped_is_a_clear_error(tmp_path, tokenizer):
    with pytest.raises(DataError, match="no example left"):
        build_datasets(_cfg(tmp_path, [{"instruction": "Hi", "output": ""}]), tokenizer)


def test_mask_history_and_train_on_prompt_through_the_pipeline(tmp_path, tokenizer):
    rows = [{"instruction": "Q2", "output": "A2", "history": [["Q1", "A1"]]}]
    write_json(tmp_path / "d.json", rows)
    write_json(
        tmp_path / "dataset_info.json",
        {
            "d": {
                "file_name": "d.json",
                "columns": {"prompt": "instruction", "response": "output", "history": "history"},
            }
        },
    )
    base = ["model=builtin:tiny", "dataset=d", f"dataset_dir={tmp_path}", "template=chatml"]
    full = build_datasets(load_config(None, base), tokenizer).train[0]
    masked = build_datasets(load_config(None, [*base, "mask_history=true"]), tokenizer).train[0]
    prompt = build_datasets(load_config(None, [*base, "train_on_prompt=true"]), tokenizer).train[0]
    assert full["input_ids"] == masked["input_ids"] == prompt["input_ids"]

    def trained(row):
        return tokenizer.decode([t for t in row["labels"] if t != X])

    assert trained(full) == "A1<|im_end|>\nA2<|im_end|>\n"
    assert trained(masked) == "A2<|im_end|>\n"
    assert prompt["labels"] == prompt["input_ids"]
