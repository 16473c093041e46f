"""Classify one run of a corpus entry: trained (or resolved, for `plan`), refused with the key named, or crash."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^tunesmith: (error: |unknown command )(.*)$", re.M)
EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]: )?[\w.]*(Error|Exception|Interrupt)\b")
QUOTED = re.compile(r"""['"`]([A-Za-z_][\w.\-]*)['"`]""")


@dataclass
class Outcome:
    entry: str  # source/file
    status: str  # trained | ran (export / chat, exit 0) | resolved (plan) | refused | crash | skipped
    key: str = ""  # the key a refusal names
    message: str = ""  # the one-line error, or what crashed
    seconds: float = 0.0
    command: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.entry.split("/", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def refusal_key(message: str) -> str:
    """The key a one-line error names: its first quoted name, else the word before its first colon."""
    quoted = QUOTED.search(message)
    if quoted:
        return quoted.group(1)
    head = message.split(":", 1)[0].strip()
    return head if head and " " not in head else ""


def _crash_line(text: str) -> str:
    """What a traceback says: a one-line error printed beside it, else the last exception line."""
    found = ERROR_LINE.search(text)
    if found:
        return f"traceback beside the error: {found.group(2)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if EXCEPTION_LINE.match(line)]
    return (errors or lines or ["traceback"])[-1]


def classify(rc: int | None, stdout: str, stderr: str, ok_status: str) -> tuple[str, str, str]:
    """(status, key, message) from an exit code (None: timed out) and the output."""
    text = stdout + "\n" + stderr
    if rc is None:
        return "crash", "", "timed out"
    if TRACEBACK in text:
        return "crash", "", _crash_line(text)[:300]
    if rc == 0:
        return ok_status, "", ""
    found = ERROR_LINE.search(stderr)
    if found is None:
        last = [line for line in stderr.splitlines() if line.strip()]
        return "crash", "", f"exit {rc} without a one-line error: {(last[-1] if last else '')[:200]}"
    kind, message = (
        found.group(1),
        stderr[found.start(2) :].strip(),
    )  # all that follows: one line if well-behaved
    if kind.startswith("unknown command"):
        command = message.split("\n", 1)[0].strip("'\"")
        return "refused", f"command {command}", f"unknown command {message.splitlines()[0]}"
    return "refused", refusal_key(message), message
