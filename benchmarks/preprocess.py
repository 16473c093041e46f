"""Preprocessing throughput: examples/s and tokens/s for 1 vs 2 workers, cold vs cached.

    python benchmarks/preprocess.py [--examples 20000] [--workers 1,2] [--template qwen]

Writes a synthetic multi-turn sharegpt file, then builds the datasets with the shipped tiny tokenizer: "cold" runs
with an empty cache, "cached" repeats the same run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tunesmith.config import load_config  # noqa: E402
from tunesmith.data.pipeline import build_datasets  # noqa: E402
from tunesmith.utils.builtin import resolve_builtin  # noqa: E402

WORDS = [
    "the",
    "capital",
    "of",
    "france",
    "is",
    "paris",
    "and",
    "rome",
    "is",
    "in",
    "italy",
    "while",
    "berlin",
    "lies",
    "on",
    "the",
    "spree",
    "river",
]


def write_data(path: Path, count: int, seed: int = 0) -> None:
    """`count` sharegpt conversations of one to three turns, 20-120 words per message."""
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))

    with path.open("w") as fh:
        for _ in range(count):
            turns = []
            for _ in range(rng.randint(1, 3)):
                turns += [{"from": "human", "value": text()}, {"from": "gpt", "value": text()}]
            fh.write(json.dumps({"conversations": turns}) + "\n")


def run(data: Path, workers: int, template: str, tokenizer) -> tuple[float, dict]:
    """Seconds for one build_datasets call, and its stats."""
    info = data.parent / "dataset_info.json"
    info.write_text(json.dumps({"bench": {"file_name": data.name, "formatting": "sharegpt"}}))
    cfg = load_config(
        None,
        [
            "model=builtin:tiny",
            "dataset=bench",
            f"dataset_dir={data.parent}",
            f"template={template}",
            "cutoff_len=1024",
            f"preprocessing_num_workers={workers}",
        ],
    )
    start = time.perf_counter()
    bundle = build_datasets(cfg, tokenizer)
    return time.perf_counter() - start, bundle.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--template", default="qwen")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
    rows = ["| workers | run | seconds | examples/s | tokens/s |", "| ---: | --- | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.jsonl"
        write_data(data, args.examples)
        for workers in (int(w) for w in args.workers.split(",")):
            os.environ["TUNESMITH_DATA_CACHE"] = str(Path(tmp) / f"cache{workers}")
            for label in ("cold", "cached"):
                seconds, stats = run(data, workers, args.template, tokenizer)
                rows.append(
                    f"| {workers} | {label} | {seconds:.2f} | {stats['examples'] / seconds:,.0f} "
                    f"| {stats['tokens'] / seconds:,.0f} |"
                )
        print(f"{args.examples} examples, {stats['tokens']:,} tokens, template {args.template}\n")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
