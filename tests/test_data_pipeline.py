"""Mixing, splits, sampling, the processed-data cache, tokenized_path, parallel workers, streaming and export."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import datasets
import pytest
from helpers import write_jsonl

from tunesmith.config import load_config
from tunesmith.data import cache, tokenize
from tunesmith.data.export import export_processed, format_summary
from tunesmith.data.pipeline import build_datasets
from tunesmith.utils.errors import ConfigError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def write_set(tmp_path, name, n):
    """n alpaca rows whose answers are `<name><i>`, in tmp_path/<name>.jsonl."""
    return write_jsonl(
        tmp_path / f"{name}.jsonl",
        [{"instruction": f"q {name}{i}", "output": f"{name}{i}"} for i in range(n)],
    )


def cfg(tmp_path, *args, **kw):
    base = ["model=builtin:tiny", "template=empty", f"dataset_dir={tmp_path}"]
    return load_config(None, base + list(args) + [f"{k}={v}" for k, v in kw.items()])


def answers(tokenizer, ds):
    return [tokenizer.decode([t for t in row["labels"] if t != tokenize.IGNORE_INDEX]) for row in ds]


def paths(tmp_path, *names):
    return ",".join(str(tmp_path / f"{n}.jsonl") for n in names)


def test_concat_keeps_every_row_in_order(tmp_path, tokenizer):
    write_set(tmp_path, "a", 3), write_set(tmp_path, "b", 2)
    bundle = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a", "b")), tokenizer)
    assert answers(tokenizer, bundle.train) == ["a0", "a1", "a2", "b0", "b1"]


def test_interleave_under_stops_at_first_exhausted_and_over_at_last(tmp_path, tokenizer):
    write_set(tmp_path, "a", 10), write_set(tmp_path, "b", 2)
    under = answers(
        tokenizer,
        build_datasets(
            cfg(tmp_path, dataset=paths(tmp_path, "a", "b"), mix_strategy="interleave_under"), tokenizer
        ).train,
    )
    over = answers(
        tokenizer,
        build_datasets(
            cfg(tmp_path, dataset=paths(tmp_path, "a", "b"), mix_strategy="interleave_over"), tokenizer
        ).train,
    )
    b_rows = [x for x in under if x.startswith("b")]
    assert b_rows == ["b0", "b1"] and len(under) < 12  # b ran out first: the rest of a is left out
    assert {f"a{i}" for i in range(10)} <= set(over) and len(over) > 12  # b is repeated until a is done
    skewed = answers(
        tokenizer,
        build_datasets(
            cfg(
                tmp_path,
                dataset=paths(tmp_path, "a", "b"),
                mix_strategy="interleave_over",
                interleave_probs="0.9,0.1",
            ),
            tokenizer,
        ).train,
    )
    assert sum(x.startswith("a") for x in skewed) > 3 * sum(x.startswith("b") for x in skewed)


def test_val_size_fraction_and_count_disjoint_from_train(tmp_path, tokenizer):
    write_set(tmp_path, "a", 8)
    b = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a"), val_size=0.25), tokenizer)
    train, evals = answers(tokenizer, b.train), answers(tokenizer, b.eval["eval"])
    assert len(train) == 6 and len(evals) == 2 and sorted(train + evals) == sorted(f"a{i}" for i in range(8))
    b = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a"), val_size=3), tokenizer)
    assert len(b.eval["eval"]) == 3 and len(b.train) == 5
    assert b.stats["splits"]["eval"]["examples"] == 3


def test_split_weights_make_train_valid_test(tmp_path, tokenizer):
    write_set(tmp_path, "a", 10)
    b = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a"), split="60,20,20"), tokenizer)
    parts = [answers(tokenizer, ds) for ds in (b.train, b.eval["eval"], b.test)]
    assert [len(p) for p in parts] == [6, 2, 2]
    assert sorted(sum(parts, [])) == sorted(f"a{i}" for i in range(10))
    with pytest.raises(ConfigError, match="val_size and split"):
        build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a"), split="60,20,20", val_size=2), tokenizer)


def test_seed_disable_shuffling_and_data_seed(tmp_path, tokenizer):
    write_set(tmp_path, "a", 20)
    plain = build_datasets(
        cfg(tmp_path, dataset=paths(tmp_path, "a"), val_size=4, disable_shuffling=True), tokenizer
    )
    assert answers(tokenizer, plain.eval["eval"]) == ["a16", "a17", "a18", "a19"]

    def held_out(**kw):
        bundle = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a"), val_size=4, **kw), tokenizer)
        return answers(tokenizer, bundle.eval["eval"])

    # the split follows seed, as in HF and LLaMA-Factory; data_seed only orders the training batches
    assert held_out(seed=1) != held_out(seed=2)
    assert held_out(seed=1, data_seed=5) == held_out(seed=1)


def test_eval_dataset_and_eval_on_each_dataset(tmp_path, tokenizer):
    for name, n in (("a", 4), ("e1", 2), ("e2", 3)):
        write_set(tmp_path, name, n)
    b = build_datasets(
        cfg(tmp_path, dataset=paths(tmp_path, "a"), eval_dataset=paths(tmp_path, "e1", "e2")), tokenizer
    )
    assert list(b.eval) == ["eval"] and len(b.eval["eval"]) == 5
    b = build_datasets(
        cfg(
            tmp_path,
            dataset=paths(tmp_path, "a"),
            eval_dataset=paths(tmp_path, "e1", "e2"),
            eval_on_each_dataset=True,
        ),
        tokenizer,
    )
    names = {k: answers(tokenizer, v) for k, v in b.eval.items()}
    assert names == {
        str(tmp_path / "e1.jsonl"): ["e10", "e11"],
        str(tmp_path / "e2.jsonl"): ["e20", "e21", "e22"],
    }


def test_max_samples_per_dataset_and_hash_sampling(tmp_path, tokenizer):
    write_set(tmp_path, "a", 5), write_set(tmp_path, "b", 5)
    b = build_datasets(cfg(tmp_path, dataset=paths(tmp_path, "a", "b"), max_samples=2), tokenizer)
    assert answers(tokenizer, b.train) == ["a0", "a1", "b0", "b1"]
    b = build_datasets(cfg(tmp_path, dataset=str(tmp_path / "a.jsonl") + "#8"), tokenizer)
    got = answers(tokenizer, b.train)
    assert len(got) == 8 and set(got) == {f"a{i}" for i in range(5)}  # every row once, then 3 repeats


class CountingEncoder:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = tokenize.encode_texts

        def counted(tok, texts):
            self.calls += 1
            return real(tok, texts)

        monkeypatch.setattr(tokenize, "encode_texts", counted)


def test_cache_hit_miss_and_overwrite(tmp_path, tokenizer, monkeypatch):
    data = write_set(tmp_path, "a", 6)
    counter = CountingEncoder(monkeypatch)
    first = build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer)
    assert counter.calls > 0
    counter.calls = 0
    second = build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer)
    assert counter.calls == 0, "second run with the same inputs must not tokenize"
    assert second.train["input_ids"] == first.train["input_ids"] and second.stats == first.stats
    build_datasets(cfg(tmp_path, dataset=str(data), overwrite_cache=True), tokenizer)
    assert counter.calls > 0
    for changed in ({"template": "chatml"}, {"cutoff_len": 7}):
        counter.calls = 0
        build_datasets(cfg(tmp_path, dataset=str(data), **changed), tokenizer)
        assert counter.calls > 0, changed
    counter.calls = 0
    write_set(tmp_path, "a", 7)  # the data file changed
    assert len(build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer).train) == 7 and counter.calls > 0
    counter.calls = 0
    tokenizer.add_tokens(["brandnew"])  # the tokenizer changed
    build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer)
    assert counter.calls > 0


def test_failed_tokenization_caches_nothing(tmp_path, tokenizer):
    rows = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "not json"}]}
    ]
    write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(Exception, match=r"s.jsonl line 1: function call turn must be JSON"):
        build_datasets(cfg(tmp_path, dataset=str(tmp_path / "s.jsonl"), template="qwen"), tokenizer)
    assert not [p for p in cache.cache_root().iterdir() if p.name != "hf"]


def test_tokenized_path_saves_then_loads(tmp_path, tokenizer, monkeypatch):
    data = write_set(tmp_path, "a", 4)
    saved = tmp_path / "tok"
    first = build_datasets(cfg(tmp_path, dataset=str(data), val_size=1, tokenized_path=str(saved)), tokenizer)
    assert (saved / "dataset_dict.json").is_file()
    counter = CountingEncoder(monkeypatch)
    again = build_datasets(
        cfg(tmp_path, dataset=str(data), cutoff_len=3, tokenized_path=str(saved), overwrite_cache=True),
        tokenizer,
    )
    assert counter.calls == 0
    assert again.train["input_ids"] == first.train["input_ids"]
    assert again.eval["eval"]["labels"] == first.eval["eval"]["labels"]


def test_two_workers_give_the_same_result(tmp_path, tokenizer):
    data = write_set(tmp_path, "a", 40)
    one = build_datasets(cfg(tmp_path, dataset=str(data), preprocessing_batch_size=8), tokenizer)
    two = build_datasets(
        cfg(
            tmp_path,
            dataset=str(data),
            preprocessing_batch_size=8,
            preprocessing_num_workers=2,
            overwrite_cache=True,
        ),
        tokenizer,
    )
    assert two.train["input_ids"] == one.train["input_ids"] and two.train["labels"] == one.train["labels"]


def test_streaming_yields_an_iterable_of_the_same_examples(tmp_path, tokenizer):
    data = write_set(tmp_path, "a", 12)
    eager = build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer)
    stream = build_datasets(
        cfg(tmp_path, dataset=str(data), streaming=True, max_steps=5, disable_shuffling=True, val_size=2),
        tokenizer,
    )
    assert isinstance(stream.train, datasets.IterableDataset)
    rows = list(stream.train)
    assert [r["input_ids"] for r in rows] == eager.train["input_ids"][2:]
    assert [r["input_ids"] for r in stream.eval["eval"]] == eager.train["input_ids"][:2]
    shuffled = build_datasets(
        cfg(tmp_path, dataset=str(data), streaming=True, max_steps=5, buffer_size=6), tokenizer
    )
    got = [r["input_ids"] for r in shuffled.train]
    assert got != eager.train["input_ids"] and sorted(got) == sorted(eager.train["input_ids"])


STREAM_SCRIPT = """
import json, sys
from transformers import AutoTokenizer
from tunesmith.config import load_config
from tunesmith.data.pipeline import build_datasets
from tunesmith.utils.builtin import resolve_builtin
from tunesmith.utils.memory import peak_rss_bytes

big, small = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))


def first_rows(path, n):
    cfg = load_config(None, ["model=builtin:tiny", f"dataset={path}", "streaming=true", "max_steps=10",
                             "buffer_size=64", "template=empty", "cutoff_len=64", "preprocessing_batch_size=100"])
    rows = iter(build_datasets(cfg, tok).train)
    return sum(1 for _, _ in zip(range(n), rows))


first_rows(small, 10)  # warm up: every import and code path, on a tiny file
before = peak_rss_bytes()
taken = first_rows(big, 500)
after = peak_rss_bytes()
print(json.dumps({"taken": taken, "growth_mb": (after - before) / 2**20}))
"""


def test_streaming_does_not_load_the_file(tmp_path):
    """A ~240 MB file streams with well under 100 MB of extra memory (loading it takes ~300 MB)."""
    path = tmp_path / "big.jsonl"
    filler = "lorem ipsum dolor sit amet " * 90
    row = json.dumps({"instruction": filler, "output": "fine"}) + "\n"
    with path.open("w") as fh:
        fh.writelines([row] * 100_000)
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 200
    small = write_set(tmp_path, "small", 20)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STREAM_SCRIPT), str(path), str(small)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["taken"] == 500
    assert result["growth_mb"] < 100, result


def test_export_writes_examples_and_counts(tmp_path, tokenizer):
    data = write_set(tmp_path, "a", 5)
    out = tmp_path / "out.jsonl"
    summary = export_processed(cfg(tmp_path, dataset=str(data)), tokenizer, out, limit=2)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and summary["exported"] == 2 and summary["examples"] == 5
    assert lines[0]["supervised_text"] == "a0" and lines[0]["text"] == "q a0a0"
    assert len(lines[0]["input_ids"]) == len(lines[0]["labels"])
    assert sum(c for _, _, c in summary["histogram"]) == 5
    assert summary["tokens"] == sum(
        len(r["input_ids"]) for r in build_datasets(cfg(tmp_path, dataset=str(data)), tokenizer).train
    )
    text = format_summary(summary, out)
    assert "supervised_tokens" in text and "#" in text


def test_llamafactory_tokenized_folder_and_probability_count(tmp_path, tokenizer):
    rows = {"input_ids": [[5, 6, 7]], "labels": [[-100, 6, 7]]}
    lf = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "validation_alpaca": datasets.Dataset.from_dict(rows)}
    )
    lf.save_to_disk(str(tmp_path / "lf"))
    bundle = build_datasets(cfg(tmp_path, tokenized_path=str(tmp_path / "lf")), tokenizer)
    assert bundle.train["labels"] == [[-100, 6, 7]] and list(bundle.eval) == ["alpaca"]
    write_set(tmp_path, "a", 3), write_set(tmp_path, "b", 3)
    with pytest.raises(ConfigError, match="interleave_probs: 3 probabilities for 2 datasets"):
        build_datasets(
            cfg(
                tmp_path,
                dataset=paths(tmp_path, "a", "b"),
                mix_strategy="interleave_under",
                interleave_probs="0.2,0.3,0.5",
            ),
            tokenizer,
        )


def test_export_of_a_stream_counts_what_it_wrote(tmp_path, tokenizer):
    data = write_set(tmp_path, "a", 6)
    out = tmp_path / "s.jsonl"
    config = cfg(tmp_path, dataset=str(data), streaming=True, max_steps=3, disable_shuffling=True)
    summary = export_processed(config, tokenizer, out, limit=4)
    assert summary["exported"] == summary["examples"] == 4 and summary["dropped"] is None
    assert [json.loads(x)["supervised_text"] for x in out.read_text().splitlines()] == [
        "a0",
        "a1",
        "a2",
        "a3",
    ]
    assert "n/a (streaming)" in format_summary(summary, out)
