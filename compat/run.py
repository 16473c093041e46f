"""Run every corpus config through the real tunesmith CLI for 2 steps (or `plan` with --plan-only) and classify it.

Usage: .venv/bin/python -m compat.run [--plan-only [--in-process]] [--source lf_v0 ...] [--only SUBSTRING ...] [--jobs N]
       [--docs docs/COMPAT.md] [--json FILE] [--keep DIR]   (`make compat` runs it in full and writes docs/COMPAT.md)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # `python compat/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.entries import SOURCES, Entry, Invocation, discover, invocation  # noqa: E402
from compat.outcome import Outcome, classify  # noqa: E402
from compat.report import format_summary, write_docs  # noqa: E402
from compat.rewrite import prepare  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUNESMITH = [sys.executable, "-m", "tunesmith.cli"]
TRAINING = ("train", "sft", "pt", "rlhf")
BASE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "WANDB_MODE": "offline",
}


def cli_args(inv: Invocation, plan_only: bool) -> list[str]:
    """The tunesmith command line (after `tunesmith`) for a prepared invocation."""
    command = inv.command
    config = [inv.config_path] if inv.config is not None else []
    extra: list[str] = []
    if plan_only and command in TRAINING:
        if command == "rlhf":  # its --rlhf_type (ms-swift's default dpo) sets the stage and the loss
            extra = [] if inv.flags.get("rlhf_type") else ["--rlhf_type", "dpo"]
        elif command != "train":  # `tunesmith sft|pt ...` set the stage as the command does
            extra = [f"stage={inv.stage}"]
        command = "plan"
    return [command, *config, *inv.flags.tokens(), *extra]


# what an evaluation-only run (do_train false, or evaluation data alone) writes instead of a trained model
EVALUATION_FILES = ("eval_results.json", "predict_results.json", "generated_predictions.jsonl")


def run_entry(entry: Entry, work: Path, plan_only: bool, timeout: float) -> Outcome:
    inv = invocation(entry)
    root = work / entry.source / entry.path.name  # a .cmd and a .yaml may share a stem
    prepare(entry, inv, root)
    args = cli_args(inv, plan_only)
    env = os.environ | BASE_ENV | inv.env
    start = time.monotonic()
    try:
        done = subprocess.run(
            TUNESMITH + args,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, _text(exc.stdout), _text(exc.stderr)
    seconds = time.monotonic() - start
    ok = "resolved" if plan_only else "trained" if inv.command in TRAINING else "ran"
    status, key, message = classify(rc, out, err, ok)
    if status == "trained" and not (root / "output" / "trainer_state.json").is_file():
        evaluated = [f for f in EVALUATION_FILES if (root / "output" / f).is_file()]
        status, message = (
            ("ran", f"evaluation only: {evaluated[0]}")
            if evaluated
            else (
                "crash",
                "exit 0 but no output/trainer_state.json",
            )
        )
    (root / "stdout.txt").write_text(out, encoding="utf-8")
    (root / "stderr.txt").write_text(err, encoding="utf-8")
    env_words = [f"{k}={v}" for k, v in inv.env.items()]
    command = shlex.join([*env_words, "tunesmith", *args])
    return Outcome(entry.key, status, key, message, round(seconds, 1), command, inv.notes)


def plan_in_process(entry: Entry, work: Path) -> Outcome:
    """`tunesmith plan --no-data` through the CLI's main function in this process (fast: one import of everything).

    Commands other than training ones run only when tunesmith lacks them (then they are refused at once)."""
    from tunesmith import cli

    inv = invocation(entry)
    root = work / entry.source / entry.path.name  # a .cmd and a .yaml may share a stem
    prepare(entry, inv, root)
    if inv.command not in TRAINING and inv.command in cli.COMMANDS:
        return Outcome(entry.key, "skipped", message=f"`tunesmith {inv.command}` runs in a subprocess only")
    args = cli_args(inv, plan_only=True) + (["--no-data"] if inv.command in TRAINING else [])
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with _inside(root, inv.env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(args)
        except Exception:  # a crash: its traceback is the finding
            rc = 1
            err.write(traceback.format_exc())
    status, key, message = classify(rc, out.getvalue(), err.getvalue(), "resolved")
    command = shlex.join([*(f"{k}={v}" for k, v in inv.env.items()), "tunesmith", *args])
    return Outcome(entry.key, status, key, message, round(time.monotonic() - start, 1), command, inv.notes)


@contextlib.contextmanager
def _inside(folder: Path, env: dict[str, str]):
    """Run with `folder` as working directory and `env` added to the environment; both restored after."""
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(folder)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-only", action="store_true", help="run `tunesmith plan` instead of training")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="with --plan-only: `plan --no-data` in this process (seconds)",
    )
    parser.add_argument("--source", nargs="*", default=list(SOURCES), choices=SOURCES)
    parser.add_argument(
        "--only", nargs="*", default=[], help="entries whose source/file contains one of these"
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per entry (600 train, 120 plan)")
    parser.add_argument("--docs", type=Path, default=None, help="write this Markdown report (docs/COMPAT.md)")
    parser.add_argument("--json", type=Path, default=None, help="write the outcomes as JSON")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args(argv)
    entries = [e for e in discover(tuple(args.source)) if not args.only or any(o in e.key for o in args.only)]
    timeout = args.timeout or (120 if args.plan_only else 600)
    with tempfile.TemporaryDirectory(prefix="tunesmith-compat-") as tmp:
        work = args.keep or Path(tmp)
        if args.in_process:
            outcomes = [_report(plan_in_process(e, work)) for e in entries]
        else:
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                outcomes = list(
                    pool.map(lambda e: _report(run_entry(e, work, args.plan_only, timeout)), entries)
                )
    print(format_summary(outcomes))
    if args.json:
        args.json.write_text(json.dumps([o.as_dict() for o in outcomes], indent=1), encoding="utf-8")
    if args.docs:
        write_docs(args.docs, outcomes, plan_only=args.plan_only, in_process=args.in_process)
    return 0


def _report(outcome: Outcome) -> Outcome:
    detail = outcome.key or outcome.message
    print(f"{outcome.status:8s} {outcome.seconds:6.1f}s  {outcome.entry}  {detail[:120]}", flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
