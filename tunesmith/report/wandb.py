"""Weights & Biases: online with an API key, else offline files under `output_dir/wandb` (`wandb sync` uploads them)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tunesmith.report.base import require, scalars, split_name

logger = logging.getLogger("tunesmith")


def wandb_mode() -> str:
    """WANDB_MODE when set; otherwise online if an API key is configured, else offline (never an input prompt)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    if os.environ.get("WANDB_API_KEY") or (
        netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    ):
        return "online"
    logger.warning(
        "wandb: no API key found (WANDB_API_KEY or `wandb login`); logging offline, upload with `wandb sync`"
    )
    return "offline"


class WandbBackend:
    """Logs metrics as `train/loss`, `eval/loss`, ... at the optimizer step; the config becomes the run config."""

    def __init__(self, output_dir: str | Path, project: str, run_name: str) -> None:
        wandb = require("wandb")
        self._teardown = wandb.teardown
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", project),
            name=run_name,
            dir=str(output_dir),
            mode=wandb_mode(),
            reinit="create_new",
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log the numeric metrics at `step`."""
        values = {"/".join(split_name(k)): v for k, v in scalars(metrics).items()}
        if values:
            self.run.log(values, step=step)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Store the (secret-free) config as the run config."""
        self.run.config.update(params, allow_val_change=True)

    def close(self) -> None:
        """Finish the run and wait until wandb has written (or uploaded) everything."""
        self.run.finish()
        self._teardown()  # finish() may return before the offline run file is flushed
