"""Finding and validating checkpoints: the `checkpoint-<step>` folders of an output_dir, whether one is complete
(its `COMPLETE` marker lists every file, its size and checksum), which one to resume from, and its `trainer_state.json`."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from tunesmith.utils.errors import ConfigError
from tunesmith.utils.hashing import ALGORITHM, file_digest

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


def problem(path: Path, checksums: bool = False) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is: the `COMPLETE` marker lists every file with
    its size and checksum; sizes are always compared, checksums with `checksums` (before resuming)."""
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker (the write did not finish)"
    try:
        files = marker_files(json.loads(marker.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, ValueError):
        return f"its {MARKER} marker is unreadable"
    for name, (size, digest) in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            return f"{name} is missing or has the wrong size (corrupt)"
        if checksums and digest is not None and file_digest(file) != digest:
            return f"{name} does not match its checksum (corrupt)"
    return None


def marker_files(marker: Any) -> dict[str, tuple[int, str | None]]:
    """name -> (size, checksum) from a marker: `{"files": {name: {"size", "blake2b"}}}`, or the older
    `{name: size}` (no checksums)."""
    if "files" not in marker:
        return {name: (int(size), None) for name, size in marker.items()}
    return {name: (int(f["size"]), f.get(ALGORITHM)) for name, f in marker["files"].items()}


def find_resume_checkpoint(output_dir: str | Path) -> Path | None:
    """`resume_from_checkpoint: auto`: the newest checkpoint of `output_dir` that is complete and matches its
    checksums (the others are skipped with a warning saying why), or None."""
    for path in reversed(checkpoints(output_dir)):
        why = problem(path, checksums=True)
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
    why = problem(path, checksums=True)
    if why is not None:
        raise ConfigError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint ({why}); "
            "use resume_from_checkpoint: auto to take the newest complete one"
        )
    return path


def read_state(path: str | Path) -> dict[str, Any]:
    """The `trainer_state.json` of checkpoint `path` (a ConfigError when it is unreadable)."""
    file = Path(path) / STATE_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"resume_from_checkpoint: {file} is unreadable ({exc}); the checkpoint is corrupt"
        ) from None
