"""Per-step metrics: the trainer_log.jsonl writer (until the reporter takes over) and the progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class JsonlLog:
    """Appends one JSON object per logged step to `output_dir/trainer_log.jsonl` (the reporter's contract)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / "trainer_log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Write `metrics` (with `step`) as one line; non-finite floats become null."""
        row = {"step": step, **{k: _json_number(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Progress:
    """A progress bar over optimizer steps showing loss, lr and tokens/s (tqdm adds the ETA)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = tqdm(
            total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True
        )

    def update(self, metrics: dict[str, Any]) -> None:
        """Advance one step and show the latest metrics."""
        shown = {
            "loss": metrics.get("loss"),
            "lr": metrics.get("lr"),
            "tok/s": metrics.get("tokens_per_second"),
        }
        self.bar.set_postfix(
            {k: f"{v:.4g}" for k, v in shown.items() if isinstance(v, (int, float))}, refresh=False
        )
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
