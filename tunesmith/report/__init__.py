"""Reporting: trainer_log.jsonl, TensorBoard / wandb / SwanLab / MLflow backends, the progress bar and plots."""

from tunesmith.report.plot import plot_run
from tunesmith.report.reporter import Reporter, build_reporter
from tunesmith.report.schedule import should_log

__all__ = ["Reporter", "build_reporter", "plot_run", "should_log"]
