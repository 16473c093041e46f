"""Run a function in a forked process: the parent's imports are shared, the child's memory peak is its own.

The parent must not have initialised CUDA (a forked child cannot use it then); every CUDA job runs in a child.
"""

from __future__ import annotations

import multiprocessing
from typing import Any


def in_child(target: Any, *args: Any, timeout: float | None = None) -> Any:
    """`target(*args)` in a forked process; its return value (its exception, a crash or running past `timeout`
    seconds raise RuntimeError here)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def work() -> None:
        try:
            child.send(("ok", target(*args)))
        except BaseException as exc:  # reported to the parent, which raises it
            child.send(("error", f"{type(exc).__name__}: {exc}"))

    proc = ctx.Process(target=work)
    proc.start()
    child.close()  # the parent keeps only its end: a crashed child then reads as end-of-file
    try:
        if not parent.poll(timeout):
            proc.kill()
            raise RuntimeError(f"{target.__name__}{args}: ran past {timeout} s")
        status, value = parent.recv()
    except EOFError:
        proc.join()
        status, value = "error", f"the process died (exit code {proc.exitcode})"
    finally:
        proc.join()
    if status != "ok":
        raise RuntimeError(f"{target.__name__}{args}: {value}")
    return value
