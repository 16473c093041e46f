"""The processed-data cache never serves stale or damaged tokens: an edit that keeps the file's size and time, and
`split_special_tokens`, change the key; a truncated or bit-flipped cache file is found and rebuilt."""

from __future__ import annotations

import os

import pytest
from helpers import write_jsonl

from tunesmith.config import load_config
from tunesmith.data import cache
from tunesmith.data.pipeline import build_datasets
from tunesmith.model.tokenizer import load_tokenizer


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
