"""torchrun as tunesmith's launcher runs it: the arguments of `python -m torch.distributed.run`, but a failed rank
ends the launch with that rank's exit code and no launcher traceback. A rank that stops on a config or data error
(printed once, by rank 0) leaves a marker, so the ranks that then lose their peer stop quietly too: a file for the
ranks of its node, a key in the launch's agent store (hosted by the first node's torchrun) for the other nodes."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def _marker() -> Path | None:
    """This launch's marker, named by the run id and master port torchrun gives every rank."""
    run_id, port = os.environ.get("TORCHELASTIC_RUN_ID"), os.environ.get("MASTER_PORT")
    return _path(run_id, port) if run_id and port else None


def _path(run_id: str, port: str) -> Path:
    return Path(tempfile.gettempdir()) / f"tunesmith-error-{run_id}-{port}"


def _clear(run_id: str | None, port: Any) -> None:
    """Remove the launch's markers (a standalone launch's port is picked later: any port of its run id)."""
    if not run_id:
        return
    pattern = _path(run_id, "*" if run_id != "none" else str(port)).name
    for path in Path(tempfile.gettempdir()).glob(pattern):
        path.unlink(missing_ok=True)


def _agent_store() -> Any:
    """A client of the store torchrun's agents share (on MASTER_ADDR:MASTER_PORT), or None without one."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from torch.distributed import TCPStore

    try:
        return TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=2),
        )
    except (KeyError, ValueError, RuntimeError):  # no address, or the first node's agent is gone
        return None


def _store_key() -> str:
    return f"tunesmith-error-{os.environ.get('TORCHELASTIC_RUN_ID', '')}"


def report_failure() -> None:
    """Record that this launch stopped on a one-line error (rank 0 printed it)."""
    marker = _marker()
    if marker is not None:
        marker.touch()
    store = _agent_store()
    if store is not None:
        store.set(_store_key(), "1")


def peer_failed(wait: float = 5.0) -> bool:
    """True when another rank of this launch stopped on a one-line error (this rank's failure follows from it).
    Waits up to `wait` seconds: the failed rank's process group closes before its error reaches the top."""
    marker = _marker()
    if marker is None:
        return False
    store = _agent_store()
    deadline = time.monotonic() + wait
    while not (marker.exists() or (store is not None and _has_key(store))):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _has_key(store: Any) -> bool:
    try:
        return bool(store.check([_store_key()]))
    except RuntimeError:  # the first node's agent ended: only the file marker can still tell
        return False


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    _clear(args.rdzv_id, args.master_port)  # a marker left by an earlier launch on the same port
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    finally:
        _clear(args.rdzv_id, args.master_port)  # standalone: run() set the launch's own id
    return 0


if __name__ == "__main__":
    sys.exit(main())
