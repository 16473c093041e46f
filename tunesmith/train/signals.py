"""SIGTERM/SIGINT during training: remember the request; the loop finishes its step, checkpoints and exits."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from tunesmith.utils.errors import TunesmithError

logger = logging.getLogger("tunesmith")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(TunesmithError):
    """Training was stopped by a signal after saving a checkpoint (the exit status is non-zero)."""


class StopRequest:
    """Set by a signal handler; the training loop polls `requested` between optimizer steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        """True once SIGTERM or SIGINT arrived."""
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        logger.warning(
            "%s received: finishing the current step and saving a checkpoint (send it again to stop at once)",
            signal.Signals(signum).name,
        )


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
