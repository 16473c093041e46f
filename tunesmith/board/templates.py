"""Configs the start form can begin from: a small built-in one, YAML files in RUNS_DIR, and every run's config."""

from __future__ import annotations

from pathlib import Path

from tunesmith.board.jobs import BOARD_DIR, Jobs
from tunesmith.board.runs import find_runs
from tunesmith.board.status import FINAL_CONFIG

MAX_BYTES = 256 * 1024
STARTER = """\
# A minute on a laptop CPU: the built-in tiny model on the built-in demo set (nothing is downloaded).
model_name_or_path: builtin:tiny
stage: sft
finetuning_type: full
dataset: demo
dataset_dir: builtin:demo
cutoff_len: 128
per_device_train_batch_size: 16
learning_rate: 1.0e-3
max_steps: 100
lr_scheduler_type: cosine
warmup_ratio: 0.1
logging_steps: 1
save_steps: 50
report_to: none
"""


def config_templates(root: Path, jobs: Jobs) -> list[dict[str, str]]:
    """`[{"label", "text"}]`: the starter, then RUNS_DIR/*.yaml, then the config of each run (newest name last)."""
    found = [{"label": "starter (builtin:tiny on the demo set)", "text": STARTER}]
    sources = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    for name in find_runs(root, jobs):
        board_copy = jobs.folder(name) / "config.yaml"
        sources.append(board_copy if board_copy.is_file() else root / name / FINAL_CONFIG)
    for path in sources:
        text = _read(path)
        if text is not None:
            found.append({"label": _label(root, path, jobs), "text": text})
    return found


def _label(root: Path, path: Path, jobs: Jobs) -> str:
    if path.name == FINAL_CONFIG:
        return f"run {path.parent.relative_to(root).as_posix()} (resolved config)"
    if path.parent.parent == root / BOARD_DIR:
        return f"run {path.parent.name} (as started)"
    return path.name


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
