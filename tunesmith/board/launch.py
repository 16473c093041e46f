"""Check a config the user wrote or edited in the board, as `tunesmith plan` does, and start it as a run.

A problem is reported with the line of the key it names, so the page can show it beside that key.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

from tunesmith.board import heavy
from tunesmith.board.jobs import BOARD_DIR, Job, Jobs
from tunesmith.utils.errors import TunesmithError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CONFIG_NAME = "config.yaml"  # the name error messages show ("config.yaml line 4")
_LINE = re.compile(r"\bline (\d+)\b")
_KEY = re.compile(r"'([^']+)'")


@dataclasses.dataclass
class Problem:
    """What is wrong, the key it names (or "run name") and that key's line in the text (None: not in the text)."""

    message: str
    key: str | None = None
    line: int | None = None


def locate(message: str, text: str) -> Problem:
    """Attach the key and line a ConfigError message names ("'lr' (config.yaml line 4): ...")."""
    match = _LINE.search(message)
    key_match = _KEY.search(message)
    key = key_match.group(1) if key_match else None
    line = int(match.group(1)) if match else None
    if line is None and key is not None:
        line = _line_of(key, text)
    return Problem(message, key, line)


def _line_of(key: str, text: str) -> int | None:
    pattern = re.compile(rf"^\s*['\"]?{re.escape(key)}['\"]?\s*:")
    return next((n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)), None)


def check_name(root: Path, name: str) -> Problem | None:
    """A run name is one folder name under RUNS_DIR that no run uses yet."""
    if not NAME.fullmatch(name) or name.startswith(BOARD_DIR):
        return Problem(
            "run name: use letters, digits, '.', '_' and '-' (up to 100, not starting with '.')", "run name"
        )
    if (root / name).exists() or (root / BOARD_DIR / name).exists():
        return Problem(f"run name: {name!r} is taken under {root}; choose another name", "run name")
    return None


def check_config(
    root: Path, name: str, text: str, count_data: bool = True
) -> tuple[dict[str, Any], list[Problem]]:
    """The plan (`plan_summary`) of `text` run as `name`, or the problems found (config loaded and validated, data
    counted when `count_data`, nothing trained)."""
    problem = check_name(root, name)
    if problem is not None:
        return {}, [problem]
    with heavy.LOCK, tempfile.TemporaryDirectory() as tmp:
        from tunesmith.config import load_config
        from tunesmith.config.validate import validate_config

        path = Path(tmp) / CONFIG_NAME
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path, overrides_for(root, name), validate=False)
            validate_config(cfg, user_code=False)  # checking a config imports none of its plugin_modules
            plan = plan_summary(cfg, count_data=count_data)
        except TunesmithError as exc:
            return {}, [locate(str(exc), text)]
    return plan, []


def plan_summary(cfg: Any, *, count_data: bool) -> dict[str, Any]:
    """What `tunesmith plan` derives for `cfg`: `{"derived": batch and step math, "memory": the estimate's lines,
    "dialect": {name, reason}}` (the caller holds heavy.LOCK)."""
    from tunesmith.plan_memory_config import format_memory
    from tunesmith.planning import describe_plan

    report = describe_plan(cfg, count_data=count_data)
    dialect = report.get("dialect") or {}
    return {
        "derived": report["derived"],
        "memory": [line.strip() for line in format_memory(report["memory"])[1:]],
        "dialect": {"name": dialect.get("name"), "reason": dialect.get("reason")},
    }


def overrides_for(root: Path, name: str) -> list[str]:
    """What the board sets on the command line: the run's folder under RUNS_DIR."""
    return [f"output_dir={(root / name).resolve()}"]


def start_run(
    root: Path, jobs: Jobs, name: str, text: str
) -> tuple[Job | None, dict[str, Any], list[Problem]]:
    """Validate, then start `tunesmith train` on `text` with output_dir RUNS_DIR/<name>."""
    plan, problems = check_config(root, name, text)
    if problems:
        return None, {}, problems
    return jobs.start(name, text, overrides_for(root, name), plan), plan, []
