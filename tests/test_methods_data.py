"""Data switches: ms-swift's truncation strategies and packing_length, TRL's eos_token / pad_token overrides and
chat_template_path."""

from __future__ import annotations

import pytest
from helpers import tiny_tokenizer, write_json, write_jsonl

from tunesmith.config import load_config
from tunesmith.data.batching import build_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.data.truncation import cut_document, truncate
from tunesmith.model.tokenizer import load_tokenizer
from tunesmith.utils.errors import ConfigError

LONG = {"instruction": "Tell me " + "a long story " * 12, "output": "Once upon a time " * 6}
SHORT = {"instruction": "Hi", "output": "Hello there."}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def _data(tmp_path, *args, cutoff=24):
    write_json(tmp_path / "d.json", [LONG, SHORT])
    cfg = load_config(
        None,
        [
            "model=builtin:tiny",
            f"dataset={tmp_path / 'd.json'}",
            "template=empty",
            f"cutoff_len={cutoff}",
            *args,
        ],
    )
    return cfg, build_datasets(cfg, tiny_tokenizer()).train


def test_truncate_rules():
    ids, labels = list(range(10)), [-100] * 5 + list(range(5, 10))
    assert truncate(ids, labels, 4, "delete") is None
    assert truncate(ids, labels, 4, "left") == ([6, 7, 8, 9], [6, 7, 8, 9])
    assert truncate(ids, labels, 4, "right") == ([0, 1, 2, 3], [-100] * 4)
    assert truncate(ids[:3], labels[:3], 4, "delete") == (ids[:3], labels[:3])
    assert cut_document(ids, 4, "split") == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_strategies_through_the_pipeline(tmp_path):
    _, plain = _data(tmp_path)
    _, deleted = _data(tmp_path, "truncation_strategy=delete")
    _, left = _data(tmp_path, "truncation_strategy=left")
    assert len(plain) == 2 and len(deleted) == 1 and len(deleted[0]["input_ids"]) < 24
    _, whole = _data(tmp_path, cutoff=1000)
    _, right = _data(tmp_path, "truncation_strategy=right")
    assert (
        left[0]["input_ids"] == whole[0]["input_ids"][-24:] and left[0]["labels"] == whole[0]["labels"][-24:]
    )
    assert len(right) == 1  # the long one's first 24 tokens are all prompt: nothing supervised, dropped
    assert plain[0]["input_ids"] != left[0]["input_ids"]  # the default splits the budget per turn instead
    assert any(label == -100 for label in plain[0]["labels"])


def test_split_is_for_documents(tmp_path):
    with pytest.raises(ConfigError, match="truncation_strategy: split"):
        _data(tmp_path, "truncation_strategy=split")


def test_packing_length_sets_the_row_length(tmp_path):
    cfg, train = _data(tmp_path, "packing=true", "packing_length=64", cutoff=48)
    rows = [row for mb in build_batcher(cfg, train, tiny_tokenizer()) for row in mb["input_ids"]]
    assert rows and max(len(r) for r in rows) <= 64
    cfg, train = _data(tmp_path, "packing_length=64")
    with pytest.raises(ConfigError, match="packing_length"):
        build_batcher(cfg, train, tiny_tokenizer())


def test_eos_pad_and_chat_template_overrides(tmp_path):
    (tmp_path / "t.jinja").write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    cfg = load_config(
        None,
        [
            "model=builtin:tiny",
            "eos_token=<|endoftext|>",
            "pad_token=<|im_start|>",
            f"chat_template_path={tmp_path / 't.jinja'}",
        ],
        validate=False,
    )
    tok = load_tokenizer(cfg)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|im_start|>"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[hi]"
    bad = load_config(None, ["model=builtin:tiny", "eos_token=<not-a-token>"], validate=False)
    with pytest.raises(ConfigError, match="eos_token"):
        load_tokenizer(bad)


def test_self_cognition_placeholders(tmp_path):
    rows = [
        {"instruction": "Who are you?", "output": "I am {{NAME}}, made by {{AUTHOR}}."},
        {"instruction": "你是谁？", "output": "我是{{NAME}}，由{{AUTHOR}}开发。"},
    ]
    write_json(tmp_path / "d.json", rows)
    base = ["model=builtin:tiny", f"dataset={tmp_path / 'd.json'}", "template=empty"]
    cfg = load_config(None, [*base, "model_name=小黄,Xiao Huang", "model_author=魔搭,ModelScope"])
    train = build_datasets(cfg, tiny_tokenizer()).train
    tok = tiny_tokenizer()
    texts = [tok.decode(row["input_ids"]) for row in train]
    assert any("I am Xiao Huang, made by ModelScope." in t for t in texts)
    assert any("我是小黄，由魔搭开发。" in t for t in texts)
    with pytest.raises(ConfigError, match="model_name"):
        build_datasets(load_config(None, [*base, "model_name=a,b,c"]), tiny_tokenizer())


def test_custom_chat_template_and_lazy_tokenize_refusal():
    cfg = load_config(
        None, ["model=builtin:tiny", "custom_chat_template=<{{ messages[0]['content'] }}>"], validate=False
    )
    assert (
        load_tokenizer(cfg).apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "<x>"
    )
    base = ["model=builtin:tiny", "dataset=demo", "dataset_dir=builtin:demo", "lazy_tokenize=true"]
    with pytest.raises(ConfigError, match="lazy_tokenize"):
        load_config(None, ["dialect=tunesmith", *base])
    assert (
        load_config(None, base).dialect.name == "swift"
    )  # only ms-swift writes it: taken as tokenizing ahead


def test_dataset_text_field_names_the_text_column(tmp_path):
    write_jsonl(
        tmp_path / "t.jsonl", [{"body": "alpha beta gamma", "id": 1}, {"body": "delta epsilon", "id": 2}]
    )
    base = ["model=builtin:tiny", f"dataset={tmp_path / 't.jsonl'}", "cutoff_len=32"]
    cfg = load_config(None, [*base, "stage=pt", "dataset_text_field=body", "packing=false"])
    train = build_datasets(cfg, tiny_tokenizer()).train
    tok = tiny_tokenizer()
    assert sorted(tok.decode(r["input_ids"]).strip() for r in train)[0].startswith("alpha beta gamma")
    with pytest.raises(ConfigError, match="dataset_text_field"):
        build_datasets(load_config(None, [*base, "dataset_text_field=body"]), tiny_tokenizer())
