"""torchrun as tunesmith's launcher runs it: the arguments of `python -m torch.distributed.run`, but a failed rank
ends the launch with that rank's exit code and no launcher traceback. A rank that stops on a config or data error
(printed once, by rank 0) leaves a marker, so the ranks that then lose their peer stop quietly too."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def _marker(run_id: str | None = None) -> Path | None:
    """The marker of this launch: only for a launch's own id (a standalone launch's uuid, not the shared 'none')."""
    run_id = run_id or os.environ.get("TORCHELASTIC_RUN_ID")
    return Path(tempfile.gettempdir()) / f"tunesmith-error-{run_id}" if run_id and run_id != "none" else None


def report_failure() -> None:
    """Record that this launch stopped on a one-line error (rank 0 printed it)."""
    marker = _marker()
    if marker is not None:
        marker.touch()


def peer_failed(wait: float = 5.0) -> bool:
    """True when another rank of this launch stopped on a one-line error (this rank's failure follows from it).
    Waits up to `wait` seconds: the failed rank's process group closes before its error reaches the top."""
    marker = _marker()
    if marker is None:
        return False
    deadline = time.monotonic() + wait
    while not marker.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    finally:
        marker = _marker(getattr(args, "rdzv_id", None))
        if marker is not None:
            marker.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
