"""SwanLab: `swanlab_project` / `swanlab_exp_name` / `swanlab_mode` (cloud, local, offline, disabled) / `swanlab_token`.

Written against swanlab 0.10.3, which needs protobuf < 7; the reference environment pins protobuf 7, so swanlab is
not installed there and asking for it raises the install hint of `report.base.require`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from tunesmith.report.base import require, scalars, split_name

logger = logging.getLogger("tunesmith")


def swanlab_mode(mode: str) -> str:
    """SwanLab's name for `swanlab_mode`: cloud is `online`; local without the dashboard package is `offline`
    (the same run files, viewable once `swanlab[dashboard]` is installed)."""
    if mode == "cloud":
        return "online"
    if mode == "local" and importlib.util.find_spec("swanboard") is None:
        logger.info(
            "swanlab: local mode without swanboard; writing run files (view: pip install 'swanlab[dashboard]')"
        )
        return "offline"
    return mode


class SwanlabBackend:
    """Logs metrics as `train/loss`, `eval/loss`, ... at the optimizer step; runs are written to `output_dir/swanlog`."""

    def __init__(
        self, output_dir: str | Path, project: str, exp_name: str, mode: str, token: str | None
    ) -> None:
        swanlab = require("swanlab")
        if token and mode == "cloud":
            swanlab.login(api_key=token, save=False)
        self.run = swanlab.init(
            project=project, name=exp_name, mode=swanlab_mode(mode), log_dir=str(Path(output_dir) / "swanlog")
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log the numeric metrics at `step`."""
        values = {"/".join(split_name(k)): v for k, v in scalars(metrics).items()}
        if values:
            self.run.log(values, step=step)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Store the (secret-free) config as the experiment config."""
        self.run.config.update(params)

    def close(self) -> None:
        """Finish the experiment."""
        self.run.finish()
