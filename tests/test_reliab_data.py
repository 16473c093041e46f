"""The processed-data cache never serves stale or damaged tokens: an edit that keeps the file's size and time, and
`split_special_tokens`, change the key; a truncated or bit-flipped cache file is found and rebuilt."""

from __future__ import annotations

import json
import os

import pytest
from helpers import write_jsonl

from tunesmith.config import load_config
from tunesmith.data import cache
from tunesmith.data.pipeline import build_datasets
from tunesmith.model.tokenizer import load_tokenizer
from tunesmith.utils.errors import DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def _cfg(tmp_path, data, *extra):
    return load_config(
        None, ["model=builtin:tiny", "template=empty", f"dataset_dir={tmp_path}", f"dataset={data}", *extra]
    )


def _entries() -> list:
    return sorted(p for p in cache.cache_root().iterdir() if (p / "dataset_dict.json").is_file())


def test_same_size_same_mtime_edit_is_a_new_entry(tmp_path, tokenizer):
    data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "cat"}])
    first = build_datasets(_cfg(tmp_path, data), tokenizer).train["input_ids"][:]
    stat = data.stat()
    data.write_text(data.read_text().replace("cat", "dog"))  # same length
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.stat().st_size == stat.st_size and data.stat().st_mtime_ns == stat.st_mtime_ns
    second = build_datasets(_cfg(tmp_path, data), tokenizer).train["input_ids"][:]
    assert second != first and len(_entries()) == 2


def test_split_special_tokens_is_in_the_key(tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "say <|im_end|>", "output": "ok"}])
    ids = {}
    for split in ("false", "true"):
        cfg = _cfg(tmp_path, data, f"split_special_tokens={split}")
        ids[split] = build_datasets(cfg, load_tokenizer(cfg)).train["input_ids"][:]
    assert ids["true"] != ids["false"] and len(_entries()) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_cache_entry_is_rebuilt(tmp_path, tokenizer, damage, caplog):
    data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(8)])
    first = build_datasets(_cfg(tmp_path, data), tokenizer).train["input_ids"][:]
    (entry,) = _entries()
    arrow = next(entry.rglob("*.arrow"))
    if damage == "truncate":
        with arrow.open("r+b") as f:
            f.truncate(arrow.stat().st_size // 2)
    else:
        raw = bytearray(arrow.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        arrow.write_bytes(bytes(raw))
    again = build_datasets(_cfg(tmp_path, data), tokenizer).train["input_ids"][:]
    assert again == first
    assert "is damaged" in caplog.text and "processing the data again" in caplog.text
    assert (
        build_datasets(_cfg(tmp_path, data), tokenizer).train["input_ids"][:] == first
    )  # the rebuilt entry loads


def _fails(tmp_path, tokenizer, dataset, *extra) -> str:
    with pytest.raises(DataError) as raised:
        build_datasets(_cfg(tmp_path, dataset, *extra), tokenizer)
    return str(raised.value)


def test_alpaca_input_errors_are_reported_under_input(tmp_path, tokenizer):
    for bad in (0, [1, 2]):
        data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "input": bad, "output": "a"}])
        assert f"{data} line 1, field 'input': expected a string" in _fails(tmp_path, tokenizer, data)


def test_row_errors_name_the_physical_line_and_the_file(tmp_path, tokenizer):
    good = json.dumps({"instruction": "q", "output": "a"})
    bad = json.dumps({"instruction": "q", "input": 0, "output": "a"})
    path = tmp_path / "blank.jsonl"
    path.write_text(f"{good}\n\n{good}\n\n\n{bad}\n{good}\n")  # the bad record is the 3rd, on line 6
    assert f"{path} line 6, field 'input'" in _fails(tmp_path, tokenizer, path)
    assert f"{path} line 6, field 'input'" in _fails(tmp_path, tokenizer, f"{path}#4")  # after a random draw
    folder = tmp_path / "folder"
    folder.mkdir()
    other = json.dumps({"instruction": "q", "input": "x", "output": "a"})
    (folder / "a.jsonl").write_text(f"{other}\n{other}\n")
    missing = json.dumps({"instruction": "q", "input": "x", "output": None})
    (folder / "b.jsonl").write_text(f"{other}\n\n{missing}\n")
    assert f"{folder / 'b.jsonl'} line 3, field 'output'" in _fails(tmp_path, tokenizer, folder)


def test_unreadable_files_name_the_line(tmp_path, tokenizer):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n')
    assert f"{latin} line 2 (byte 56): not UTF-8 text (byte 0xe9)" in _fails(tmp_path, tokenizer, latin)
    csv = tmp_path / "bad.csv"
    csv.write_text("instruction,output\na,b\nc,d,e\n")
    assert "Expected 2 fields in line 3, saw 3" in _fails(tmp_path, tokenizer, csv)
