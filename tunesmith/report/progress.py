"""The training progress bar: step count, loss, lr, tokens/s and ETA (tqdm)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_SHOWN = (("loss", "loss"), ("lr", "lr"), ("tokens_per_second", "tok/s"))


class Progress:
    """A bar over optimizer steps; `enabled` False (replicas, `disable_tqdm`) shows nothing."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = tqdm(
            total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True
        )

    def update(self, metrics: dict[str, Any]) -> None:
        """Advance one step and show the latest metrics."""
        shown = {label: metrics.get(key) for key, label in _SHOWN}
        self.bar.set_postfix(
            {k: f"{v:.4g}" for k, v in shown.items() if isinstance(v, int | float)}, refresh=False
        )
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
