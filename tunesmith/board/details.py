"""One run in detail: resolved config with each key's source, the plan, checkpoints, plots and the log tail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunesmith.board import heavy
from tunesmith.board.jobs import Job, Jobs
from tunesmith.board.launch import plan_summary
from tunesmith.board.logs import LOG_FILE, tail_text
from tunesmith.board.runs import summarize
from tunesmith.board.status import FINAL_CONFIG, checkpoint_steps
from tunesmith.utils.errors import TunesmithError

PLOT_GLOB = "training_*.png"


def checkpoint_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Each checkpoint folder: step, complete or not, size in MiB and when it was written."""
    rows = []
    for step, complete in checkpoint_steps(run_dir):
        path = run_dir / f"checkpoint-{step}"
        if not path.is_dir():
            path = run_dir / f"checkpoint-{step}.tmp"
        try:
            files = [p.stat() for p in path.iterdir() if p.is_file()]
        except OSError:
            continue
        rows.append(
            {
                "name": path.name,
                "step": step,
                "complete": complete,
                "size_mb": round(sum(s.st_size for s in files) / 2**20, 1),
                "written": max((s.st_mtime for s in files), default=None),
            }
        )
    return rows


def plot_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's PNG plots with their modification times (the page reloads a plot that was rewritten)."""
    rows = []
    for path in sorted(run_dir.glob(PLOT_GLOB)):
        try:
            rows.append({"name": path.name, "mtime": path.stat().st_mtime})
        except OSError:
            continue
    return rows


def config_source(run_dir: Path, job: Job | None, jobs: Jobs) -> tuple[Path | None, list[str]]:
    """The config file to show (the board's copy of what the user started, else the final resolved config) and the
    command-line overrides it ran with."""
    if job is not None:
        return jobs.folder(job.name) / "config.yaml", [f"output_dir={run_dir}"]
    final = run_dir / FINAL_CONFIG
    return (final, []) if final.is_file() else (None, [])


def resolved_config(path: Path | None, overrides: list[str], *, as_started: bool) -> dict[str, Any]:
    """`{"keys": [{name, section, value, set_as, dialect}], "plan": {...}}` or `{"error": ...}`.

    A config as started is validated like `tunesmith plan` and shows the keys the user set (with how its dialect
    took each peer name, and the dialect's home defaults); a run's final resolved config is read back without
    validation (it holds every argument) and shows those away from their default. Call with heavy.LOCK held.
    """
    if path is None:
        return {
            "keys": [],
            "plan": {},
            "note": "no config yet (a run started elsewhere writes it when it ends)",
        }
    from tunesmith.config import load_config
    from tunesmith.config.schema import fields_by_name
    from tunesmith.config.serialize import config_to_dict, plain

    try:
        cfg = load_config(path, overrides, validate=as_started)
        plan = plan_summary(cfg, count_data=False) if as_started else {}
    except TunesmithError as exc:
        return {"keys": [], "plan": {}, "error": str(exc)}
    fields = fields_by_name()
    taken = {t["key"]: f"{t['system']}: {t['how']}" for t in (cfg.dialect.taken if cfg.dialect else [])}
    keys = [
        {
            "name": name,
            "section": section,
            "value": value,
            "set_as": cfg.origins[name],
            "dialect": taken.get(_written_key(cfg.origins[name]), ""),
        }
        for section, items in config_to_dict(cfg).items()
        for name, value in items.items()
        if name in cfg.origins and (as_started or value != plain(fields[name].default))
    ]
    for name, default in (cfg.dialect.defaults if cfg.dialect and as_started else {}).items():
        why = f"{default['system']} default: {default['why']}"
        keys.append({"name": name, "section": "", "value": default["value"], "set_as": "", "dialect": why})
    return {"keys": keys, "plan": plan, "file": str(path)}


def _written_key(origin: str) -> str:
    """The key as the user wrote it, from an origin like `'lr' (config.yaml line 4)`."""
    return origin.split("'")[1] if origin.count("'") >= 2 else origin


def run_details(root: Path, name: str, jobs: Jobs) -> dict[str, Any]:
    """Everything the run page shows besides the curves."""
    run_dir = root / name
    job = jobs.get(name)
    path, overrides = config_source(run_dir, job, jobs)
    with heavy.LOCK:
        config = resolved_config(path, overrides, as_started=job is not None)
    if job is not None and job.plan:
        config["plan"] = job.plan  # counted on the real data when the run was started
    console = jobs.folder(name) / "console.log" if job is not None else run_dir / LOG_FILE
    return {
        "name": name,
        "summary": summarize(root, name, jobs),
        "path": str(run_dir),
        "config": config,
        "checkpoints": checkpoint_rows(run_dir),
        "plots": plot_rows(run_dir),
        "log_tail": tail_text(console),
        "log_source": console.name,
        "read_at": time.time(),
    }
