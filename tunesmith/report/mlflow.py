"""MLflow: a run in a local file store (`output_dir/mlruns`) unless MLFLOW_TRACKING_URI names another store."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tunesmith.report.base import require, scalars

_MAX_PARAM_CHARS = 6000  # MLflow rejects longer parameter values


class MlflowBackend:
    """Logs metrics with their step and the config as run parameters; the experiment is `project`."""

    def __init__(self, output_dir: str | Path, project: str, run_name: str) -> None:
        mlflow = require("mlflow")
        from mlflow.tracking import MlflowClient

        self._entities = mlflow.entities
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(output_dir).resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):  # MLflow 3 keeps the file store working only when asked
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.tracking_uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log every numeric metric at `step`."""
        stamp = _millis()
        batch = [self._entities.Metric(k, v, stamp, step) for k, v in scalars(metrics).items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Log the config as parameters (values cut to MLflow's length limit)."""
        items = [self._entities.Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def close(self) -> None:
        """Mark the run finished."""
        self.client.set_terminated(self.run_id)


def _millis() -> int:
    return int(time.time() * 1000)
