"""Read a run's trainer_log.jsonl while it is being written: complete lines only, bad lines skipped, never raise."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

LOG_FILE = "trainer_log.jsonl"
TAIL_BYTES = 64 * 1024  # enough for the last rows of any log


@dataclasses.dataclass
class LogChunk:
    """Rows read from a byte offset on; `offset` is where the next read starts (after the last complete line)."""

    rows: list[dict[str, Any]]
    offset: int
    skipped: int = 0  # complete lines that were not a JSON object with a step
    reset: bool = False  # the file got shorter than the offset asked for (rewritten on resume): read from 0


def clean_row(value: Any) -> dict[str, Any] | None:
    """A log row with only numeric (finite, else None) values and an integer step, or None when it is not one."""
    if not isinstance(value, dict) or isinstance(value.get("step"), bool):
        return None
    if not isinstance(value.get("step"), int | float) or not math.isfinite(value["step"]):
        return None
    row: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, int | float | type(None)):
            continue
        row[str(key)] = item if item is None or math.isfinite(item) else None
    row["step"] = int(value["step"])
    return row


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Rows of the complete lines in `data`, and how many non-empty lines were not rows."""
    rows, skipped = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = clean_row(json.loads(line))
        except (ValueError, RecursionError):
            row = None
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return rows, skipped


def read_rows(path: Path, offset: int = 0) -> LogChunk:
    """The rows of the complete lines of `path` from byte `offset` on ([] when the file is missing)."""
    try:
        size = path.stat().st_size
    except OSError:
        return LogChunk([], 0, reset=offset > 0)
    reset = offset > size
    start = 0 if reset else max(offset, 0)
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return LogChunk([], start, reset=reset)
    end = data.rfind(b"\n")
    if end < 0:  # nothing complete yet (a line being written)
        return LogChunk([], start, reset=reset)
    rows, skipped = parse_lines(data[:end])
    return LogChunk(rows, start + end + 1, skipped, reset)


def last_rows(path: Path) -> list[dict[str, Any]]:
    """The rows among the last TAIL_BYTES of `path` (the first, probably cut, line dropped when not at 0)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(size - TAIL_BYTES, 0))
            data = f.read()
    except OSError:
        return []
    if size > TAIL_BYTES:
        data = data[data.find(b"\n") + 1 :]
    end = data.rfind(b"\n")
    return parse_lines(data[:end])[0] if end >= 0 else []


def tail_text(path: Path, lines: int = 40) -> list[str]:
    """The last `lines` lines of a text file, decoded leniently ([] when it cannot be read)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(size - TAIL_BYTES, 0))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()][-lines:]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, half-written or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
