"""Read the process layout (world size, ranks) from the environment torchrun and launchers set."""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else default


def world_size() -> int:
    """Processes in the job: WORLD_SIZE under torchrun, else NPROC_PER_NODE x NNODES asked of the launcher, else 1."""
    if "WORLD_SIZE" in os.environ:
        return _env_int("WORLD_SIZE", 1)
    return _env_int("NPROC_PER_NODE", 1) * _env_int("NNODES", 1)


def rank() -> int:
    """Global rank of this process (0 outside torchrun)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """Rank of this process on its node (0 outside torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def under_torchrun() -> bool:
    """True when this process was started by torchrun (or another launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ
