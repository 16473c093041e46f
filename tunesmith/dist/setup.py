"""Join the process group that torchrun (or a scheduler) describes in the environment."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator

import torch
import torch.distributed as dist

from tunesmith.dist.deepspeed import forget_process_group
from tunesmith.utils.errors import ConfigError

BACKENDS = ("gloo", "nccl", "mpi", "ccl", "hccl", "xccl")
_SET_BY_US: set[str] = set()  # environment variables init_single_process added


def default_backend() -> str:
    """nccl when CUDA is available, else gloo."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None, timeout_s: int = 1800) -> bool:
    """Initialise torch.distributed from RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT; False when not distributed.

    `backend` is `ddp_backend` (None: nccl on GPU, gloo on CPU); `timeout_s` is `ddp_timeout` in seconds.
    """
    if dist.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ConfigError(f"ddp_backend: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("ddp_backend: nccl needs CUDA GPUs; on CPU use ddp_backend: gloo")
    if timeout_s <= 0:
        raise ConfigError(f"ddp_timeout: must be > 0 seconds, got {timeout_s}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def init_single_process(backend: str | None = None, timeout_s: int = 1800) -> None:
    """A process group of this process alone (rank 0 of 1, on a free local port): FSDP2 or DeepSpeed asked for
    without torchrun still run their engine, on one rank (e.g. ZeRO-3 offload on one GPU). LOCAL_RANK=0 is set
    for the group's lifetime when absent (DeepSpeed requires it); `cleanup` removes it again."""
    backend = backend or default_backend()
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = "0"
        _SET_BY_US.add("LOCAL_RANK")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if backend == "nccl":
        torch.cuda.set_device(0)
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def is_main_process(on_each_node: bool = False) -> bool:
    """Rank 0 (or local rank 0 of every node with `on_each_node`, for `log_on_each_node`/`save_on_each_node`)."""
    if not dist.is_initialized():
        return True
    if on_each_node:
        return int(os.environ.get("LOCAL_RANK", "0")) == 0
    return dist.get_rank() == 0


def cleanup() -> None:
    """Destroy the process group if one is active (and drop what `init_single_process` set and what DeepSpeed
    kept of it)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    forget_process_group()
    while _SET_BY_US:
        os.environ.pop(_SET_BY_US.pop(), None)


@contextlib.contextmanager
def main_process_first(on_each_node: bool = False) -> Iterator[None]:
    """Run the body on the main process first, then on the others (which then read its cache)."""
    main = is_main_process(on_each_node)
    if dist.is_initialized() and not main:
        dist.barrier()
    yield
    if dist.is_initialized() and main:
        dist.barrier()
