"""Runs the board started: `tunesmith train` subprocesses, their config copy, console log and state on disk.

Everything lives in RUNS_DIR/.board/<name>/ (config.yaml, console.log, job.json), so a restarted board still knows
which runs it started and whether their process is alive. Stopping sends SIGTERM: the run saves and exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BOARD_DIR = ".board"


@dataclasses.dataclass
class Job:
    """One run started from the board."""

    name: str
    pid: int
    started: float
    plan: dict[str, Any]
    stop_requested: bool = False
    returncode: int | None = None  # known once the board saw the process end

    def to_json(self) -> dict[str, Any]:
        """The fields kept in job.json."""
        return dataclasses.asdict(self)


class Jobs:
    """The runs started from this RUNS_DIR's board (this process and earlier ones)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen] = {}

    def folder(self, name: str) -> Path:
        """RUNS_DIR/.board/<name>: the board's files for run `name`."""
        return self.root / BOARD_DIR / name

    def get(self, name: str) -> Job | None:
        """The job of run `name`, with its return code when the process has ended (None if not started here)."""
        path = self.folder(name) / "job.json"
        try:
            job = Job(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        process = self.processes.get(name)
        if process is not None and job.returncode is None and process.poll() is not None:
            job.returncode = process.returncode
            self._save(job)
        return job

    def names(self) -> list[str]:
        """Names of the runs started from this board."""
        base = self.root / BOARD_DIR
        return sorted(p.parent.name for p in base.glob("*/job.json")) if base.is_dir() else []

    def alive(self, job: Job) -> bool:
        """True while the job's process runs (a child of this board, or a `tunesmith` process of that pid)."""
        process = self.processes.get(job.name)
        if process is not None:
            return process.poll() is None
        return job.returncode is None and pid_runs_tunesmith(job.pid)

    def start(self, name: str, config_text: str, overrides: list[str], plan: dict[str, Any]) -> Job:
        """Save the config copy and start `tunesmith train` on it in the background."""
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.yaml"
        config.write_text(config_text, encoding="utf-8")
        command = [sys.executable, "-m", "tunesmith.cli", "train", str(config), *overrides]
        with (folder / "console.log").open("wb") as console:
            process = subprocess.Popen(
                command,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,  # Ctrl-C on the board does not stop its runs
            )
        self.processes[name] = process
        job = Job(name=name, pid=process.pid, started=time.time(), plan=plan)
        self._save(job)
        return job

    def stop(self, name: str) -> Job | None:
        """Send SIGTERM to a running job's process group (it finishes its step, saves a checkpoint and exits)."""
        job = self.get(name)
        if job is None or not self.alive(job):
            return None
        os.killpg(
            job.pid, signal.SIGTERM
        )  # its own process group: a torchrun launch forwards it to the ranks
        job.stop_requested = True
        self._save(job)
        return job

    def _save(self, job: Job) -> None:
        path = self.folder(job.name) / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.to_json()), encoding="utf-8")
        tmp.replace(path)


def pid_runs_tunesmith(pid: int) -> bool:
    """True when process `pid` exists and its command line mentions tunesmith (a reused pid does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True  # no /proc (macOS): the pid exists
    return b"tunesmith" in cmdline
