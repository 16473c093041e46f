"""`tunesmith data CONFIG --export FILE.jsonl [--limit N]`: write processed examples and summarise them."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from tunesmith.data.pipeline import build_datasets
from tunesmith.data.tokenize import IGNORE_INDEX


def export_processed(
    cfg: Any, tokenizer: PreTrainedTokenizerBase, path: str | Path, limit: int | None
) -> dict:
    """Write the first `limit` (all when None) processed train examples to `path` as JSON Lines, with decoded
    text; return the counts (examples, dropped, tokens, supervised_tokens, exported) and a length histogram."""
    bundle = build_datasets(cfg, tokenizer)
    rows = islice(iter(bundle.train), limit) if limit is not None else iter(bundle.train)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exported = []
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(_readable(row, tokenizer), ensure_ascii=False) + "\n")
            exported.append(len(row["input_ids"]))
    if isinstance(bundle.train, datasets.Dataset):
        counts = {k: bundle.stats[k] for k in ("examples", "dropped", "tokens", "supervised_tokens")}
        lengths = pc.list_value_length(bundle.train.data.table.column("input_ids")).to_pylist()
    else:  # a stream has no totals: count what was exported
        counts = {
            "examples": len(exported),
            "dropped": None,
            "tokens": sum(exported),
            "supervised_tokens": None,
        }
        lengths = exported
    return {**counts, "exported": len(exported), "histogram": length_histogram(lengths, cfg.data.cutoff_len)}


def _readable(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    out = {k: row[k] for k in ("input_ids", "labels", "position_ids") if k in row}
    out["text"] = tokenizer.decode(row["input_ids"], skip_special_tokens=False)
    out["supervised_text"] = tokenizer.decode(
        [t for t in row["labels"] if t != IGNORE_INDEX], skip_special_tokens=False
    )
    if "rejected_input_ids" in row:  # a preference pair: input_ids/labels are the chosen sequence
        out["rejected_input_ids"], out["rejected_labels"] = row["rejected_input_ids"], row["rejected_labels"]
        out["rejected_text"] = tokenizer.decode(row["rejected_input_ids"], skip_special_tokens=False)
        out["rejected_supervised_text"] = tokenizer.decode(
            [t for t in row["rejected_labels"] if t != IGNORE_INDEX], skip_special_tokens=False
        )
    if "kto_tag" in row:
        out["kto_tag"] = row["kto_tag"]
    return out


def length_histogram(lengths: list[int], cutoff_len: int) -> list[tuple[int, int, int]]:
    """(low, high, count) buckets doubling from 16 up to cutoff_len; lengths in [low, high)."""
    edges = [0, 16]
    while edges[-1] < cutoff_len:
        edges.append(min(edges[-1] * 2, cutoff_len))
    edges[-1] = max(edges[-1], max(lengths, default=0)) + 1
    counts = [0] * (len(edges) - 1)
    for n in lengths:
        counts[next(i for i in range(len(counts)) if n < edges[i + 1])] += 1
    return [(edges[i], edges[i + 1], c) for i, c in enumerate(counts)]


def format_summary(summary: dict[str, Any], path: str | Path) -> str:
    """A short text report: counts, then the histogram as bars."""
    lines = [f"wrote {summary['exported']} example(s) to {path}"]
    for key in ("examples", "dropped", "tokens", "supervised_tokens"):
        value = summary[key]
        lines.append(f"  {key:<18} {value if value is not None else 'n/a (streaming)'}")
    lines.append("  length histogram (tokens: examples)")
    top = max((c for _, _, c in summary["histogram"]), default=0) or 1
    for low, high, count in summary["histogram"]:
        lines.append(f"  {low:>6}-{high - 1:<6} {count:>8} {'#' * round(40 * count / top)}")
    return "\n".join(lines)
