"""SIGTERM/SIGINT during training: remember the request; the loop finishes its step, checkpoints and exits. A second
signal stops at once: a checkpoint being written is abandoned (it stays a `.tmp` folder, never resumed from) and the
one-line error names the last complete checkpoint."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from tunesmith.train.checkpoint_find import PREFIX, checkpoints, problem
from tunesmith.utils.errors import TunesmithError

logger = logging.getLogger("tunesmith")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(TunesmithError):
    """Training was stopped by a signal after saving a checkpoint (the exit status is non-zero)."""


class TrainingAbandoned(TunesmithError):
    """A second signal stopped training at once (the exit status is non-zero)."""


class StopRequest:
    """Set by a signal handler; the training loop polls `requested` between optimizer steps. `output_dir` lets the
    message of a second signal name the checkpoint to resume from."""

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.signal: int | None = None
        self.output_dir = Path(output_dir) if output_dir is not None else None

    @property
    def requested(self) -> bool:
        """True once SIGTERM or SIGINT arrived."""
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise TrainingAbandoned(self._abandoned_message(signum))
        self.signal = signum
        logger.warning(
            "%s received: finishing the current step and saving a checkpoint (send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def _abandoned_message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        if self.output_dir is None:
            return f"training stopped at once by a second {name}"
        pending = sorted(p.name for p in self.output_dir.glob(f"{PREFIX}*.tmp"))
        done = [p for p in checkpoints(self.output_dir) if problem(p) is None]
        abandoned = f"the checkpoint being written ({', '.join(pending)}) was abandoned; " if pending else ""
        resume = (
            f"the last complete checkpoint is {done[-1]}: resume with resume_from_checkpoint: auto"
            if done
            else "no complete checkpoint was written"
        )
        return f"training stopped at once by a second {name}: {abandoned}{resume}"


@contextlib.contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[StopRequest]:
    """Install handlers setting `request` for the body (main thread only; elsewhere it never fires)."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request._handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted_message(signum: int, step: int, checkpoint: str) -> str:
    """The error shown when a signal stopped training: what was saved and how to resume."""
    return (
        f"training stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved to {checkpoint}. "
        "Resume with resume_from_checkpoint: auto (same output_dir) or resume_from_checkpoint: " + checkpoint
    )
