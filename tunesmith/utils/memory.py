"""This process's resident memory: now and at its peak.

The peak is the kernel's high-water mark of this process's own address space (`VmHWM`). `ru_maxrss` is not used
on Linux: it survives `exec`, so a process started by a large parent (pytest, a notebook, a launcher) reports the
parent's peak as its own.
"""

from __future__ import annotations

import os
import resource
import sys


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process's own address space so far."""
    if sys.platform.startswith("linux"):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
