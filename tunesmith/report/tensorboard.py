"""TensorBoard event files under `logging_dir` (scalars as `train/loss`, `eval/loss`, ...; the config as text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.report.base import require, scalars, split_name


class TensorBoardBackend:
    """Writes each logged number as a scalar with the HF tag naming."""

    def __init__(self, log_dir: str | Path) -> None:
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Add one scalar per numeric metric at `step`."""
        for key, value in scalars(metrics).items():
            self.writer.add_scalar("/".join(split_name(key)), value, step)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Store the config as a JSON text entry `config`."""
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=2, default=str) + "\n```")

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
