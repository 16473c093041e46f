"""An exclusive lock on an output directory, so that two runs never write into one folder at once.

The lock is `output_dir/.tunesmith.lock`: an `fcntl.flock` held for the life of the run (the kernel drops it when
the process dies, however it dies) plus the holder's pid, host and start time written inside, for the message a
second run gets. A lock file left by a dead process is stale: it is taken over, with a note naming the old pid.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
LOCK_FILE = ".tunesmith.lock"


class RunLock:
    """`with RunLock(output_dir):` holds the directory's lock for the body; released on every exit path."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise a ConfigError naming the run (pid, host) that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._locked_fd()
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"output_dir: {self.path.parent} is not a directory") from None
        except OSError as exc:
            raise ConfigError(f"output_dir: cannot write {self.path}: {exc.strerror}") from None
        previous = _read_holder(fd)
        if previous:
            logger.info(
                "output_dir: took over the stale lock of a finished or killed run (%s)", _describe(previous)
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def _locked_fd(self) -> int:
        """An open descriptor of the lock file, locked; retried when the file was replaced meanwhile (a holder
        that released it between our open and our lock)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(_read_holder(fd))
                os.close(fd)
                raise ConfigError(
                    f"output_dir: {self.path.parent} is in use by another run ({holder}); wait for it to finish, "
                    "or use another output_dir"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, object]:
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw.decode()) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "holder unknown"
    here = holder.get("host") == socket.gethostname()
    alive = here and _alive(holder.get("pid"))
    state = "running" if alive else ("not running" if here else "on another host")
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, {state}"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
