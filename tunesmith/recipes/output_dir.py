"""Claiming `output_dir` for a run without losing anything that is already there.

`plan_output_dir` only looks (before any data or model is loaded): it picks the checkpoint to resume from and lists
what of an earlier run would be in the way. `claim_output_dir` acts, just before the run writes its first file:
the files in the way are moved into `output_dir/.previous-<time>/` (never deleted), and on resume the killed run's
log lines after the checkpoint are dropped (they are trained again). A fresh run into a folder that holds an earlier
run is refused unless `overwrite_output_dir` (then the earlier run is moved aside) or a resume is asked for.
`explained_failures` turns a failure during training into a message naming the checkpoint that is intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.train.checkpoint_find import checkpoints, problem, read_state, resolve_resume
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError, DataError, TunesmithError
from tunesmith.utils.runlock import LOCK_FILE

logger = logging.getLogger("tunesmith")
LOG_FILE = "trainer_log.jsonl"
ASIDE_PREFIX = ".previous-"
# files that show a folder holds an earlier run
RUN_FILES = (LOG_FILE, "tunesmith_config.yaml", "model.safetensors", "adapter_model.safetensors")
_WRITE_ERRORS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
)  # a full or read-only disk
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)(\.tmp)?$")


@dataclasses.dataclass
class OutputPlan:
    """What the run does with its output_dir: the checkpoint it resumes from and what it moves aside."""

    output_dir: Path
    resume: Path | None = None
    aside: list[Path] = dataclasses.field(default_factory=list)
    why: str = ""


def plan_output_dir(cfg: Any) -> OutputPlan:
    """Check `output_dir` and decide resume / fresh start; changes nothing on disk."""
    args = cfg.train
    out = Path(args.output_dir)
    if cfg.evaluation_only():
        return OutputPlan(out)  # evaluation only: writes its results files beside whatever is there
    plan = OutputPlan(out, resolve_resume(args))
    if plan.resume is not None:
        step = read_state(plan.resume)["global_step"]
        plan.aside = [p for p, s in _checkpoint_folders(out) if s > step]
        plan.why = f"checkpoints after step {step}, which this resumed run writes again"
        return plan
    earlier = earlier_run(out)
    if not earlier:
        return plan
    if args.overwrite_output_dir:
        plan.aside, plan.why = _entries(out), "overwrite_output_dir: the earlier run in this folder"
    elif args.resume_from_checkpoint not in (None, "", False):
        plan.aside, plan.why = _entries(out), "no checkpoint to resume from: the earlier run's files"
    else:
        raise ConfigError(
            f"output_dir: {out} already holds an earlier run ({earlier[0].name}); set resume_from_checkpoint: "
            "auto to continue that run, overwrite_output_dir: true to move it aside and start over, or use "
            "another output_dir"
        )
    return plan


def claim_output_dir(plan: OutputPlan) -> Path | None:
    """Carry out `plan` on the main process just before the run writes: move the listed entries into
    `output_dir/.previous-<time>/` and cut the log back to the resumed step; returns the folder moved into."""
    if dist_env.rank() != 0:
        return None
    if plan.resume is not None:
        truncate_log(plan.output_dir / LOG_FILE, read_state(plan.resume)["global_step"])
    if not plan.aside:
        return None
    target = _aside_folder(plan.output_dir)
    target.mkdir()
    for entry in plan.aside:
        os.replace(entry, target / entry.name)
    logger.warning("output_dir: moved %d entries (%s) to %s", len(plan.aside), plan.why, target)
    return target


@contextlib.contextmanager
def explained_failures(trainer: Any, output_dir: str | Path) -> Iterator[None]:
    """During training: a bad row met late (streaming) or a file that cannot be written (full or read-only disk)
    becomes a one-line error saying at which step it stopped and which complete checkpoint is intact."""
    try:
        yield
    except DataError as err:
        raise DataError(f"{err}; {_stopped_at(trainer, output_dir)}") from None
    except (OSError, RuntimeError) as err:
        cause = err if isinstance(err, OSError) else err.__cause__
        if not isinstance(cause, OSError) or cause.errno not in _WRITE_ERRORS:
            raise
        what = cause.filename or output_dir
        raise TunesmithError(
            f"cannot write {what}: {cause.strerror}; {_stopped_at(trainer, output_dir)}"
        ) from None


def _stopped_at(trainer: Any, output_dir: str | Path) -> str:
    done = [p for p in checkpoints(output_dir) if problem(p) is None]
    intact = (
        f"the last complete checkpoint, {done[-1]}, is intact: resume with resume_from_checkpoint: auto once fixed"
        if done
        else "no checkpoint had been written yet"
    )
    return f"training stopped at step {trainer.state.global_step}; {intact}"


def earlier_run(out: Path) -> list[Path]:
    """The entries of `out` that belong to an earlier run: checkpoints and the run's own files."""
    if not out.is_dir():
        return []
    found = [p for p, _ in _checkpoint_folders(out)]
    return found + [out / name for name in RUN_FILES if (out / name).exists()]


def truncate_log(log: Path, step: int) -> None:
    """Keep only the lines of `log` up to optimizer step `step`; a half-written line (a kill or a full disk during
    a write) is dropped, with a warning."""
    if not log.is_file():
        return
    kept, broken = [], 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            broken += 1
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step:
            kept.append(line)
    if broken:
        logger.warning("%s: dropped %d half-written line(s) left by the interrupted run", log, broken)
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, log)


def _checkpoint_folders(out: Path) -> list[tuple[Path, int]]:
    """Every `checkpoint-<step>` and `checkpoint-<step>.tmp` folder of `out` with its step."""
    if not out.is_dir():
        return []
    found = [(p, int(m.group(1))) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found, key=lambda item: item[1])


def _entries(out: Path) -> list[Path]:
    """Everything in `out` but the lock and earlier runs moved aside."""
    return sorted(p for p in out.iterdir() if p.name != LOCK_FILE and not p.name.startswith(ASIDE_PREFIX))


def _aside_folder(out: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target, n = out / f"{ASIDE_PREFIX}{stamp}", 1
    while target.exists():
        target, n = out / f"{ASIDE_PREFIX}{stamp}-{n}", n + 1
    return target
