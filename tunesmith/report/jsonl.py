"""`output_dir/trainer_log.jsonl`: one JSON object per logged step (always written by the main process)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FILENAME = "trainer_log.jsonl"


class JsonlLog:
    """Appends `{"step": ..., **metrics}` lines to `output_dir/trainer_log.jsonl`; non-finite floats become null."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Write one line and flush it (a killed run keeps every line logged so far)."""
        row = {"step": step, **{k: json_number(v) for k, v in metrics.items() if k != "step"}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Nothing: the resolved config is saved as tunesmith_config.yaml by the recipe."""

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def json_number(value: Any) -> Any:
    """`value` with NaN/Inf floats as None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_log(output_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of `output_dir/trainer_log.jsonl` ([] when it does not exist); a line cut off by a kill or a full
    disk is skipped."""
    path = Path(output_dir) / FILENAME
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
