"""Finding and validating checkpoints: the `checkpoint-<step>` folders of an output_dir, whether one is complete
(its `COMPLETE` marker lists every file and size), which one to resume from, and its `trainer_state.json`."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
PREFIX = "checkpoint-"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir` (complete or not), oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def problem(path: Path) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is."""
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker (the write did not finish)"
    try:
        files = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"its {MARKER} marker is unreadable"
    for name, size in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            return f"{name} is missing or has the wrong size (corrupt)"
    return None


def find_resume_checkpoint(output_dir: str | Path) -> Path | None:
    """`resume_from_checkpoint: auto`: the newest complete checkpoint of `output_dir` (incomplete ones are skipped
    with a warning), or None."""
    for path in reversed(checkpoints(output_dir)):
        why = problem(path)
        if why is None:
            return path
        logger.warning("resume_from_checkpoint auto: skipping %s: %s", path, why)
    return None


def resolve_resume(args: Any) -> Path | None:
    """The checkpoint to resume from (`auto` or a path, checked), or None to start fresh."""
    value = args.resume_from_checkpoint
    if value in (None, "", False):
        return None
    if str(value).lower() in ("auto", "true"):
        found = find_resume_checkpoint(args.output_dir)
        if found is None:
            logger.warning(
                "resume_from_checkpoint auto: no complete checkpoint in %s; starting fresh", args.output_dir
            )
        return found
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"resume_from_checkpoint: {path} is not a directory")
    why = problem(path)
    if why is not None:
        raise ConfigError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint ({why}); "
            "use resume_from_checkpoint: auto to take the newest complete one"
        )
    return path


def check_output_dir(args: Any) -> None:
    """Refuse to start a fresh run in an `output_dir` that holds checkpoints, unless `overwrite_output_dir`."""
    if args.resume_from_checkpoint not in (None, "", False) or args.overwrite_output_dir:
        return
    found = checkpoints(args.output_dir)
    if found:
        raise ConfigError(
            f"output_dir: {args.output_dir} already holds checkpoints ({found[-1].name}); set "
            "resume_from_checkpoint: auto to continue that run, or overwrite_output_dir: true to start over"
        )


def read_state(path: str | Path) -> dict[str, Any]:
    """The `trainer_state.json` of checkpoint `path`."""
    return json.loads((Path(path) / STATE_FILE).read_text())
