"""The runs under RUNS_DIR: which folders are runs, and a summary of each (status, progress, config)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from tunesmith.board.jobs import BOARD_DIR, Job, Jobs
from tunesmith.board.logs import LOG_FILE, last_rows, read_json
from tunesmith.board.status import FINAL_CONFIG, checkpoint_steps, run_status

MAX_DEPTH = 3  # RUNS_DIR/a/b/c at most
SUMMARY_KEYS = (
    "model_name_or_path",
    "stage",
    "finetuning_type",
    "dataset",
    "learning_rate",
    "per_device_train_batch_size",
    "max_steps",
    "num_train_epochs",
)


def is_run_dir(path: Path) -> bool:
    """A folder a tunesmith run wrote (its step log, final config or a checkpoint)."""
    if (path / LOG_FILE).is_file() or (path / FINAL_CONFIG).is_file():
        return True
    return any(p.is_dir() for p in path.glob("checkpoint-*"))


def find_runs(root: Path, jobs: Jobs) -> list[str]:
    """Names (paths relative to `root`) of the run folders under `root`, plus runs the board started."""
    found: set[str] = set(jobs.names())
    for folder, subdirs, _ in os.walk(root):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        if depth and is_run_dir(here):
            found.add(here.relative_to(root).as_posix())
            subdirs.clear()  # a run's own folders (checkpoints, base_model) are not runs
            continue
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and depth < MAX_DEPTH]
    return sorted(found)


def read_config(run_dir: Path, job: Job | None, jobs: Jobs) -> dict[str, Any]:
    """The run's settings as written: the final `tunesmith_config.yaml`, else the board's copy ({} if neither)."""
    for path in (run_dir / FINAL_CONFIG, jobs.folder(job.name) / "config.yaml" if job else None):
        if path is None:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict):
            return canonical_keys(data)
    return {}


def canonical_keys(data: dict[str, Any]) -> dict[str, Any]:
    """`data` flattened (sections) with aliases replaced by canonical names (`lr` -> `learning_rate`)."""
    from tunesmith.config.schema import alias_table, normalize_key
    from tunesmith.config.sources import SECTION_KEYS

    table, flat = alias_table(), {}
    for key, value in data.items():
        if key in SECTION_KEYS and isinstance(value, dict):
            flat.update(canonical_keys(value))
        elif isinstance(key, str):
            flat[table.get(normalize_key(key), key)] = value
    return flat


def max_steps_of(run_dir: Path, job: Job | None, config: dict[str, Any]) -> int | None:
    """Total optimizer steps: the board's plan, else a saved trainer state, else the config's max_steps."""
    planned = job.plan.get("derived", {}).get("max_steps") if job is not None else None
    if planned:
        return int(planned)
    complete = [step for step, done in checkpoint_steps(run_dir) if done]
    states = [
        run_dir / "trainer_state.json",
        *(run_dir / f"checkpoint-{s}" / "trainer_state.json" for s in complete),
    ]
    for path in reversed(states):
        state = read_json(path)
        if isinstance(state.get("max_steps"), int) and state["max_steps"] > 0:
            return state["max_steps"]
    value = config.get("max_steps")
    return value if isinstance(value, int) and value > 0 else None


def summarize(root: Path, name: str, jobs: Jobs) -> dict[str, Any]:
    """One row of the run list: status, step / max steps, loss, tokens/s, ETA, started, config summary."""
    run_dir = root / name
    job = jobs.get(name)
    rows = last_rows(run_dir / LOG_FILE)
    train_rows = [r for r in rows if r.get("loss") is not None]
    last = train_rows[-1] if train_rows else {}
    step = rows[-1]["step"] if rows else None
    status = run_status(run_dir, job, job is not None and jobs.alive(job), step)
    config = read_config(run_dir, job, jobs)
    total = max_steps_of(run_dir, job, config)
    elapsed = last.get("elapsed_s")
    return {
        "name": name,
        "status": status,
        "step": step,
        "max_steps": total,
        "loss": last.get("loss"),
        "eval_loss": next((r["eval_loss"] for r in reversed(rows) if r.get("eval_loss") is not None), None),
        "tokens_per_second": last.get("tokens_per_second"),
        "eta_s": _eta(status, step, total, elapsed),
        "started": _started(run_dir, job, elapsed),
        "config": {k: config[k] for k in SUMMARY_KEYS if k in config},
        "board_job": job is not None,
    }


def _eta(status: str, step: int | None, total: int | None, elapsed: float | None) -> float | None:
    if status not in ("running", "stopping") or not step or not total or not elapsed:
        return None
    return max(total - step, 0) * elapsed / step


def _started(run_dir: Path, job: Job | None, elapsed: float | None) -> float | None:
    """Start time (epoch seconds): the board's record, else the log's last write minus the run's elapsed time."""
    if job is not None:
        return job.started
    try:
        mtime = (run_dir / LOG_FILE).stat().st_mtime
    except OSError:
        return None
    return mtime - (elapsed or 0.0) if elapsed is not None else mtime


def list_runs(root: Path, jobs: Jobs) -> list[dict[str, Any]]:
    """Summaries of every run under `root`, newest first."""
    rows = [summarize(root, name, jobs) for name in find_runs(root, jobs) if not name.startswith(BOARD_DIR)]
    return sorted(rows, key=lambda r: -(r["started"] or time.time()))
