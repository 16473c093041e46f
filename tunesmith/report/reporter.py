"""`build_reporter`: trainer_log.jsonl plus the `report_to` backends, behind one `Reporter` the trainer logs to."""

from __future__ import annotations

import datetime
import logging
import socket
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.arguments.training_io import REPORTERS
from tunesmith.report.base import Backend, installed
from tunesmith.report.jsonl import JsonlLog
from tunesmith.report.secrets import public_config, redact, scrub, secret_values
from tunesmith.utils.errors import ConfigError, TunesmithError
from tunesmith.utils.logging import add_redaction
from tunesmith.utils.memory import peak_rss_bytes

logger = logging.getLogger("tunesmith")

BACKENDS = ("tensorboard", "wandb", "swanlab", "mlflow")


def selected_backends(report_to: str | list[str] | None) -> list[str]:
    """The backend names `report_to` asks for: `all` = the installed ones, `none` (or nothing) = none."""
    return [name for name, _ in requested_backends(report_to)]


def requested_backends(report_to: str | list[str] | None) -> list[tuple[str, bool]]:
    """(backend, named by the user) for each backend `report_to` selects; `all` selects the installed ones
    without naming them, so one of those that fails is dropped with a warning instead of stopping the run."""
    raw = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n.strip() for item in raw for n in str(item).split(",") if n.strip()]
    for name in names:
        if name not in REPORTERS:
            raise ConfigError(
                f"report_to: {name!r} is not allowed; use one or more of {', '.join(REPORTERS)}"
            )
    if "none" in names:
        if len(names) > 1:
            raise ConfigError(f"report_to: 'none' cannot be combined with other backends (got {names})")
        return []
    named = [(n, True) for n in dict.fromkeys(names) if n != "all"]
    if "all" in names:
        named += [(b, False) for b in BACKENDS if installed(b) and b not in names]
    return named


def default_logging_dir(output_dir: str | Path) -> Path:
    """HF's default TensorBoard folder: `output_dir/runs/<Mon DD_HH-MM-SS>_<host>`."""
    stamp = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
    return Path(output_dir) / "runs" / f"{stamp}_{socket.gethostname()}"


class Reporter:
    """Sends each logged row to every backend, adding the optional token and memory metrics first."""

    def __init__(
        self, backends: dict[str, Backend], args: Any, secrets: set[str], optional: set[str] | None = None
    ) -> None:
        self.backends = backends
        self.args = args
        self.secrets = secrets
        self.optional = optional or set()  # backends the user did not name (report_to: all): never fatal
        self.tokens_seen = 0
        self.last_step = 0
        self.last_elapsed: float | None = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log one row of metrics at optimizer step `step` to every backend."""
        row = scrub(self._extend(dict(metrics)), self.secrets)
        self.last_step = max(self.last_step, step)
        for name, backend in list(self.backends.items()):
            self._call(name, backend.log, row, step)

    def log_hparams(self, cfg: Any) -> None:
        """Give the backends the resolved config with secrets removed."""
        params = public_config(cfg)
        for name, backend in list(self.backends.items()):
            self._call(name, backend.log_hparams, params)

    def _call(self, name: str, method: Any, *args: Any) -> None:
        """Call a backend; one the user did not name is dropped with a warning when it fails."""
        try:
            method(*args)
        except Exception as exc:
            if name not in self.optional:
                raise
            self.backends.pop(name, None)
            logger.warning(
                "report_to all: %s failed (%s); continuing without it", name, redact(str(exc), self.secrets)
            )

    def close(self) -> None:
        """Log the final throughput (when asked) and close every backend, even if one fails."""
        if self.backends and self.args.include_tokens_per_second and self.last_elapsed:
            self.log(
                {"train_tokens_per_second": round(self.tokens_seen / self.last_elapsed, 3)}, self.last_step
            )
        errors = []
        for name, backend in self.backends.items():
            try:
                backend.close()
            except Exception as exc:  # close the others, then report
                if name in self.optional:
                    logger.warning(
                        "report_to all: closing %s failed: %s", name, redact(str(exc), self.secrets)
                    )
                else:
                    errors.append(f"{name}: {redact(str(exc), self.secrets)}")
        self.backends = {}
        if errors:
            raise TunesmithError("report_to: closing failed for " + "; ".join(errors))

    def _extend(self, row: dict[str, Any]) -> dict[str, Any]:
        if "loss" in row:  # a training row: input tokens, as HF's train_tokens_per_second counts them
            self.tokens_seen += int(row.get("input_tokens", 0) or 0)
            self.last_elapsed = row.get("elapsed_s", self.last_elapsed)
        if not self.args.skip_memory_metrics:
            row.update(memory_metrics())
        return row


def memory_metrics() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory when a GPU is used), in MiB."""
    out = {"peak_rss_mb": round(peak_rss_bytes() / 2**20, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def build_reporter(cfg: Any, output_dir: str | Path, *, is_main: bool) -> Reporter:
    """The run's reporter: on the main process trainer_log.jsonl plus `report_to`; elsewhere one that logs nothing."""
    args = cfg.train
    secrets = secret_values(cfg)
    add_redaction(secrets)
    if not is_main:
        return Reporter({}, args, secrets)
    backends: dict[str, Backend] = {"jsonl": JsonlLog(output_dir)}
    optional: set[str] = set()
    for name, named in requested_backends(args.report_to):
        try:
            backends[name] = _open_backend(name, args, Path(output_dir))
        except Exception as exc:
            message = redact(str(exc), secrets)
            if not named:
                logger.warning("report_to all: %s failed to start (%s); continuing without it", name, message)
                continue
            Reporter(backends, args, secrets).close()
            if isinstance(exc, TunesmithError):
                raise
            raise TunesmithError(f"report_to: {name} failed to start: {message}") from None
        if not named:
            optional.add(name)
    reporter = Reporter(backends, args, secrets, optional)
    reporter.log_hparams(cfg)
    return reporter


def _open_backend(name: str, args: Any, output_dir: Path) -> Backend:
    run_name = args.run_name or output_dir.resolve().name
    if name == "tensorboard":
        from tunesmith.report.tensorboard import TensorBoardBackend

        return TensorBoardBackend(args.logging_dir or default_logging_dir(output_dir))
    if name == "wandb":
        from tunesmith.report.wandb import WandbBackend

        return WandbBackend(output_dir, args.project, run_name)
    if name == "mlflow":
        from tunesmith.report.mlflow import MlflowBackend

        return MlflowBackend(output_dir, args.project, run_name)
    from tunesmith.report.swanlab import SwanlabBackend

    return SwanlabBackend(
        output_dir,
        args.swanlab_project or args.project,
        args.swanlab_exp_name or run_name,
        args.swanlab_mode,
        args.swanlab_token,
    )
