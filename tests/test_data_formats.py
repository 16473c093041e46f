"""Sources and formats -> the internal conversation form; bad input -> one clear error naming file, line, field."""

from __future__ import annotations

import json

import datasets
import pytest
from helpers import DEMO_DIR, write_json, write_jsonl

from tunesmith.config import load_config
from tunesmith.data import cache
from tunesmith.data.pipeline import build_datasets
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.utils.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def build(tmp_path, tokenizer, info=None, dataset="d", **args):
    """Process `dataset` (chatml template) with an optional dataset_info.json registry in tmp_path."""
    if info is not None:
        write_json(tmp_path / "dataset_info.json", info)
    overrides = ["model=builtin:tiny", f"dataset_dir={tmp_path}", "template=chatml", "cutoff_len=512"]
    cfg = load_config(None, overrides + [f"{k}={v}" for k, v in args.items()])
    cfg.data.dataset = dataset
    return build_datasets(cfg, tokenizer)


def text_of(tokenizer, row):
    return tokenizer.decode(row["input_ids"]), tokenizer.decode(
        [t for t in row["labels"] if t != IGNORE_INDEX]
    )


CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"


def test_alpaca_with_system_and_history(tmp_path, tokenizer):
    write_jsonl(tmp_path / "a.jsonl", [{"q": "Q2", "i": "more", "a": "A2", "s": "Sys", "h": [["Q1", "A1"]]}])
    columns = {"prompt": "q", "query": "i", "response": "a", "system": "s", "history": "h"}
    bundle = build(tmp_path, tokenizer, {"d": {"file_name": "a.jsonl", "columns": columns}})
    full, trained = text_of(tokenizer, bundle.train[0])
    assert full == "<|im_start|>system\nSys<|im_end|>\n" + CHAT.format(q="Q1", a="A1") + CHAT.format(
        q="Q2\nmore", a="A2"
    )
    assert trained == "A1<|im_end|>\nA2<|im_end|>\n"


def test_sharegpt_custom_tags_and_system_turn(tmp_path, tokenizer):
    rows = [
        {"chat": [{"who": "sys", "text": "S"}, {"who": "me", "text": "Hi"}, {"who": "bot", "text": "Yo"}]}
    ]
    write_json(tmp_path / "s.json", rows)
    tags = {
        "role_tag": "who",
        "content_tag": "text",
        "user_tag": "me",
        "assistant_tag": "bot",
        "system_tag": "sys",
    }
    info = {
        "d": {"file_name": "s.json", "formatting": "sharegpt", "columns": {"messages": "chat"}, "tags": tags}
    }
    full, trained = text_of(tokenizer, build(tmp_path, tokenizer, info).train[0])
    assert full == "<|im_start|>system\nS<|im_end|>\n" + CHAT.format(q="Hi", a="Yo")
    assert trained == "Yo<|im_end|>\n"


def test_openai_messages_with_tool_calls_and_tool_results(tmp_path, tokenizer):
    rows = [
        {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "1+2?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "add", "arguments": '{"a": 1}'}}
                    ],  # OpenAI: a string
                },
                {"role": "tool", "content": "3"},
                {"role": "assistant", "content": "It is 3."},
            ]
        }
    ]
    write_jsonl(tmp_path / "o.jsonl", rows)
    info = {"d": {"file_name": "o.jsonl", "formatting": "openai"}}
    full, trained = text_of(tokenizer, build(tmp_path, tokenizer, info, template="qwen").train[0])
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    assert trained == f"{call}<|im_end|>\nIt is 3.<|im_end|>\n"
    assert "<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>" in full
    assert full.startswith("<|im_start|>system\nS<|im_end|>\n")


def test_plain_paths_detect_their_format(tmp_path, tokenizer):
    write_jsonl(
        tmp_path / "m.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}],
    )
    write_jsonl(
        tmp_path / "c.jsonl",
        [{"conversations": [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}],
    )
    write_jsonl(tmp_path / "q.jsonl", [{"query": "e", "response": "f"}])
    bundle = build(tmp_path, tokenizer, dataset=f"{tmp_path}/m.jsonl,{tmp_path}/c.jsonl,{tmp_path}/q.jsonl")
    texts = [text_of(tokenizer, row)[0] for row in bundle.train]
    assert texts == [CHAT.format(q="a", a="b"), CHAT.format(q="c", a="d"), CHAT.format(q="e", a="f")]


def test_inline_spec_csv_parquet_arrow_and_folder(tmp_path, tokenizer):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    ds = datasets.Dataset.from_list(rows)
    ds.to_csv(str(tmp_path / "x.csv"), index=False)
    ds.to_parquet(str(tmp_path / "x.parquet"))
    ds.save_to_disk(str(tmp_path / "arrow_dir"))
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "folder" / "part1.jsonl", rows[:2])
    write_jsonl(tmp_path / "folder" / "part2.jsonl", rows[2:])
    arrow_file = next((tmp_path / "arrow_dir").glob("*.arrow"))
    expected = [CHAT.format(q=f"q{i}", a=f"a{i}") for i in range(3)]
    for name in ("x.csv", "x.parquet", str(arrow_file), "folder"):
        bundle = build(
            tmp_path, tokenizer, dataset={"file_name": str(tmp_path / name), "formatting": "alpaca"}
        )
        assert [text_of(tokenizer, row)[0] for row in bundle.train] == expected, name


def test_pretraining_text_is_concatenated_with_eos_and_blocked(tmp_path, tokenizer):
    docs = ["alpha beta gamma", "delta epsilon", "zeta"]
    write_jsonl(tmp_path / "t.jsonl", [{"text": d} for d in docs])
    bundle = build(tmp_path, tokenizer, dataset=str(tmp_path / "t.jsonl"), stage="pt", cutoff_len=4)
    eos = tokenizer.eos_token_id
    stream = [t for d in docs for t in tokenizer.encode(d, add_special_tokens=False) + [eos]]
    blocks = [row["input_ids"] for row in bundle.train]
    assert [t for b in blocks for t in b] == stream
    assert all(len(b) == 4 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 4
    assert all(row["labels"] == row["input_ids"] for row in bundle.train)
    per_doc = build(
        tmp_path, tokenizer, dataset=str(tmp_path / "t.jsonl"), stage="pt", cutoff_len=4, packing=False
    )
    expected = [(tokenizer.encode(d, add_special_tokens=False) + [eos])[:4] for d in docs]
    assert [
        row["input_ids"] for row in per_doc.train
    ] == expected  # packing: false -> one example per document


def test_builtin_demo_registry(tmp_path, tokenizer):
    cfg = load_config(
        None, ["model=builtin:tiny", "dataset=demo", "dataset_dir=builtin:demo", "max_samples=5"]
    )
    bundle = build_datasets(cfg, tokenizer)
    assert len(bundle.train) == 5
    first = json.loads((DEMO_DIR / "demo.json").read_text())[0]
    assert text_of(tokenizer, bundle.train[0])[1] == first["output"] + "<|im_end|>\n"


def _error(tmp_path, tokenizer, **kw) -> str:
    with pytest.raises((DataError, ConfigError)) as info:
        build(tmp_path, tokenizer, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_json_line_names_file_and_line(tmp_path, tokenizer):
    good = json.dumps({"instruction": "a", "output": "b"})
    (tmp_path / "bad.jsonl").write_text(f'{good}\n{good}\n{{"instruction": "c", \n{good}\n')
    message = _error(tmp_path, tokenizer, dataset=str(tmp_path / "bad.jsonl"))
    assert f"{tmp_path / 'bad.jsonl'} line 3: malformed JSON" in message
    assert not any(cache.cache_root().glob("[0-9a-f]*")), "a failed run must not leave a cache entry"
    message = _error(tmp_path, tokenizer, dataset=str(tmp_path / "bad.jsonl"), streaming=True, max_steps=5)
    assert f"{tmp_path / 'bad.jsonl'} line 3: malformed JSON" in message


def test_missing_column_names_the_column(tmp_path, tokenizer):
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "a", "answer": "b"}])
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "a.jsonl"}})
    assert "column 'output' (columns.response) not found" in message and "a.jsonl" in message


def test_role_tag_out_of_order_names_row_and_field(tmp_path, tokenizer):
    ok = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    bad = {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}
    write_jsonl(tmp_path / "s.jsonl", [ok, bad])
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "s.jsonl", "formatting": "sharegpt"}})
    assert "s.jsonl line 2, field 'conversations[1].from'" in message and "turns must alternate" in message
    with_system = {"conversations": [{"from": "system", "value": "s"}, *bad["conversations"]]}
    write_jsonl(tmp_path / "s.jsonl", [with_system])
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "s.jsonl", "formatting": "sharegpt"}})
    assert "field 'conversations[2].from'" in message  # counted in the file's own list, system turn included
    unknown = {"conversations": [{"from": "user", "value": "a"}, {"from": "gpt", "value": "b"}]}
    write_jsonl(tmp_path / "s.jsonl", [unknown])
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "s.jsonl", "formatting": "sharegpt"}})
    assert "line 1, field 'conversations[0].from': unknown role 'user'" in message


def test_empty_dataset_unknown_formatting_and_missing_file(tmp_path, tokenizer):
    (tmp_path / "e.jsonl").write_text("")
    assert "e.jsonl: file is empty" in _error(tmp_path, tokenizer, dataset=str(tmp_path / "e.jsonl"))
    write_json(tmp_path / "e.json", [])
    assert "e.json: dataset is empty" in _error(tmp_path, tokenizer, dataset=str(tmp_path / "e.json"))
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "e.json", "formatting": "xml"}})
    assert "unknown formatting 'xml'; allowed: alpaca, sharegpt, openai, text" in message
    message = _error(tmp_path, tokenizer, info={"d": {"file_name": "missing.json"}})
    assert f"{tmp_path / 'missing.json'}: file does not exist" in message
    message = _error(tmp_path, tokenizer, info={}, dataset="nope")
    assert "'nope' is not in" in message


def test_hub_id_offline_is_a_clear_error(tmp_path, tokenizer):
    message = _error(tmp_path, tokenizer, dataset="someone/some-dataset")
    assert "someone/some-dataset" in message and "offline" in message


def test_tokenizer_template_with_tools_and_function_calls(tmp_path, tokenizer):
    """No `template`: tools and a function-call turn go through the tokenizer's own Jinja template."""
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    turns = [
        {"from": "human", "value": "1+2?"},
        {"from": "function_call", "value": json.dumps({"name": "add", "arguments": {"a": 1}})},
        {"from": "observation", "value": "3"},
        {"from": "gpt", "value": "It is 3."},
    ]
    write_jsonl(tmp_path / "t.jsonl", [{"conversations": turns, "tools": json.dumps(tools)}])
    info = {"d": {"file_name": "t.jsonl", "formatting": "sharegpt", "columns": {"tools": "tools"}}}
    cfg = load_config(None, ["model=builtin:tiny", f"dataset_dir={tmp_path}", "dataset=d"])
    write_json(tmp_path / "dataset_info.json", info)
    row = build_datasets(cfg, tokenizer).train[0]
    chat = [
        {"role": "user", "content": "1+2?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "It is 3."},
    ]
    reference = tokenizer.apply_chat_template(chat, tools=tools, tokenize=False)
    full, trained = text_of(tokenizer, row)
    assert full == reference and "You can call these tools" in full
    assert (
        trained
        == '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call><|im_end|>\nIt is 3.<|im_end|>\n'
    )


def test_per_message_loss_keys_are_refused_not_dropped(tmp_path, tokenizer):
    """ms-swift's per-message `loss` / `loss_scale` change which tokens train: an error naming the row and key."""
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss": None}]
    flagged = {"messages": [*turns, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    flagged["messages"][1] = {"role": "assistant", "content": "b", "loss": False}
    write_jsonl(tmp_path / "m.jsonl", [{"messages": turns}, flagged])
    message = _error(tmp_path, tokenizer, dataset=str(tmp_path / "m.jsonl"))
    assert "m.jsonl line 2, field 'messages[1].loss'" in message and "token_loss_weights" in message
