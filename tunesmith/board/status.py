"""A run's status (running / stopping / finished / failed / stopped) from its files, its lock and the board's job.

Order of evidence: a live process the board started; the run lock (`.tunesmith.lock`, holder pid alive on this
host); how a board job ended (exit code, stop asked); then the files alone: `tunesmith_config.yaml` is written
last by a finished run, a log written to in the last STALE_S seconds means running, and a run whose newest
complete checkpoint is at its last logged step was stopped (SIGTERM saves before exiting); anything else failed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tunesmith.board.jobs import Job, pid_runs_tunesmith
from tunesmith.board.logs import LOG_FILE
from tunesmith.utils.runlock import LOCK_FILE

STALE_S = 60.0
FINAL_CONFIG = "tunesmith_config.yaml"


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """The holder written in the run lock when its process is alive on this host (None otherwise)."""
    try:
        holder = json.loads((run_dir / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    return holder if isinstance(pid, int) and pid > 0 and pid_runs_tunesmith(pid) else None


def checkpoint_steps(run_dir: Path) -> list[tuple[int, bool]]:
    """(step, complete) of each `checkpoint-<step>` folder, oldest first; complete: renamed from its `.tmp` name
    with the COMPLETE marker inside (a `.tmp` folder is being written)."""
    found = []
    for path in run_dir.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        step = suffix.removesuffix(".tmp")
        if path.is_dir() and step.isdigit():
            found.append((int(step), step == suffix and (path / "COMPLETE").is_file()))
    return sorted(found)


def run_status(run_dir: Path, job: Job | None, job_alive: bool, last_step: int | None) -> str:
    """The status word of the run in `run_dir` (see the module docstring for the evidence used)."""
    if job is not None and job_alive:
        return "stopping" if job.stop_requested else "running"
    if lock_holder(run_dir) is not None:
        return "running"
    if job is not None and job.returncode is not None:
        if job.returncode == 0:
            return "finished"
        return "stopped" if job.stop_requested else "failed"
    if (run_dir / FINAL_CONFIG).is_file():
        return "finished"
    if job is None and _recently_written(run_dir / LOG_FILE):
        return "running"
    if job is not None and job.stop_requested:
        return "stopped"
    complete = [step for step, done in checkpoint_steps(run_dir) if done]
    if complete and last_step is not None and complete[-1] >= last_step:
        return "stopped"
    return "failed"


def _recently_written(path: Path) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime < STALE_S
    except OSError:
        return False
