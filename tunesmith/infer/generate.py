"""`tunesmith generate`: prompts from a file (jsonl / json / txt) or from the config's datasets -> a JSONL file of
answers (`prompt`, `predict`, and `label` when the input has one), batched with left padding, with a progress bar
and the tokens/s at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.infer.loading import Loaded
from tunesmith.infer.prompts import PromptBuilder
from tunesmith.model.generation import decoding_from, generate
from tunesmith.utils.errors import ConfigError, DataError

TEXT_KEYS = ("prompt", "query", "question", "text")


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Rows `{"messages": [...], "system": str, "label": str | None}` from a .txt file (one prompt a line), a .jsonl
    file or a .json list; a row holds `messages` (openai), `conversations` (sharegpt, from/value), `instruction` and
    `input` (alpaca, answer in `output`), or one of `prompt`/`query`/`question`/`text`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"--input: {path} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".txt":
        return [_user(line, None) for line in text.splitlines() if line.strip()]
    try:
        rows = (
            json.loads(text)
            if file.suffix.lower() == ".json"
            else [json.loads(line) for line in _lines(text)]
        )
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of prompts")
    return [_row(row, f"{path} row {i + 1}") for i, row in enumerate(rows)]


def _lines(text: str) -> Iterator[str]:
    return (line for line in text.splitlines() if line.strip())


def _user(content: str, label: str | None, system: str = "") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "system": system, "label": label}


def _row(row: Any, where: str) -> dict[str, Any]:
    if isinstance(row, str):
        return _user(row, None)
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object or a string")
    if "messages" in row or "conversations" in row:
        messages = row.get("messages") or [_sharegpt(turn) for turn in row["conversations"]]
        label = None
        if messages and messages[-1].get("role") == "assistant":
            label, messages = messages[-1].get("content"), messages[:-1]
        return {"messages": messages, "system": row.get("system") or "", "label": label}
    if "instruction" in row:
        content = "\n".join(p for p in (row["instruction"], row.get("input") or "") if p)
        return _user(content, row.get("output"), row.get("system") or "")
    for key in TEXT_KEYS:
        if isinstance(row.get(key), str):
            return _user(row[key], row.get("label") or row.get("response") or row.get("answer"))
    raise DataError(
        f"{where}: no prompt found; use messages, conversations, instruction/input or one of {TEXT_KEYS}"
    )


def _sharegpt(turn: dict[str, str]) -> dict[str, str]:
    roles = {
        "human": "user",
        "gpt": "assistant",
        "system": "system",
        "user": "user",
        "assistant": "assistant",
    }
    return {"role": roles.get(turn.get("from", ""), turn.get("from", "")), "content": turn.get("value", "")}


def file_prompts(builder: PromptBuilder, path: str | Path) -> list[tuple[list[int], str | None]]:
    """(prompt ids, label) of every row of the file at `path`."""
    return [(builder.chat(row["messages"], row["system"]), row["label"]) for row in read_prompts(path)]


def dataset_prompts(loaded: Loaded) -> list[tuple[list[int], str | None]]:
    """(prompt ids, label) of the config's datasets (the train split, its template and cutoff): the prompt is
    everything before the first answer token, the label the answer tokens (without the end-of-turn whitespace)."""
    from tunesmith.data import build_datasets

    out = []
    for row in build_datasets(loaded.cfg, loaded.tokenizer).train:
        ids, labels = list(row["input_ids"]), list(row["labels"])
        start = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(ids))
        answer = [label for label in labels[start:] if label != IGNORE_INDEX]
        out.append((ids[:start], loaded.tokenizer.decode(answer, skip_special_tokens=True).strip()))
    return out


def generate_file(
    loaded: Loaded, prompts: list[tuple[list[int], str | None]], output: str | Path, batch_size: int
) -> dict[str, Any]:
    """Answer every prompt, in batches of `batch_size` (longest prompts first, so padding stays small), and write
    one JSON line per prompt in input order. Returns counts and speed."""
    model, tokenizer = loaded.model, loaded.tokenizer
    decoding = decoding_from(model, tokenizer, loaded.cfg.generation, int(loaded.cfg.train.seed))
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i][0]))
    answers: dict[int, Any] = {}
    start, tokens = time.perf_counter(), 0
    with tqdm(total=len(prompts), desc="generate", unit="prompt", dynamic_ncols=True) as bar:
        for first in range(0, len(order), batch_size):
            chunk = order[first : first + batch_size]
            outs = generate(model, tokenizer, [prompts[i][0] for i in chunk], decoding)
            for i, out in zip(chunk, outs, strict=True):
                answers[i] = out
                tokens += len(out.token_ids)
            bar.set_postfix(
                {"tok/s": f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}"}, refresh=False
            )
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    records = [
        {"prompt": tokenizer.decode(ids), "predict": answers[i].text}
        | ({"label": label} if label is not None else {})
        for i, (ids, label) in enumerate(prompts)
    ]
    _write_jsonl(output, records)
    return {
        "prompts": len(prompts),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / max(seconds, 1e-9),
    }


def _write_jsonl(output: str | Path, records: list[dict[str, Any]]) -> None:
    """Write atomically: a temporary file renamed over `output`."""
    path = Path(output).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
