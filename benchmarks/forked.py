"""Run a function in a forked process: the parent's imports are shared, the child's memory peak is its own.

The parent must not have initialised CUDA (a forked child cannot use it then); every CUDA job runs in a child.
"""

from __future__ import annotations

import multiprocessing
from typing import Any


def in_child(target: Any, *args: Any) -> Any:
    """`target(*args)` in a forked process; its return value (exceptions re-raised here)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def work() -> None:
        try:
            child.send(("ok", target(*args)))
        except BaseException as exc:  # reported to the parent, which raises it
            child.send(("error", f"{type(exc).__name__}: {exc}"))

    proc = ctx.Process(target=work)
    proc.start()
    status, value = parent.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{target.__name__}{args}: {value}")
    return value
