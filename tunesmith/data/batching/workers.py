"""Background assembly of micro-batches: `batching_workers` threads (HF `dataloader_num_workers`) build the next
batches while the model computes on the current one (tensor work releases the GIL). Threads, not processes: the
dataset is shared, nothing is pickled. Up to `workers x prefetch` batches (HF `dataloader_prefetch_factor`) are in
flight; with `pin_memory` on a CUDA machine each batch is pinned for a faster, non-blocking copy to the GPU;
`persistent` keeps the threads for the whole run instead of starting them again every epoch."""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


class BatchWorkers:
    """A pool of `workers` threads mapping a function over items in order (`map`)."""

    def __init__(
        self, workers: int, prefetch: int = 2, pin_memory: bool = False, persistent: bool = False
    ) -> None:
        if workers < 1 or prefetch < 1:
            raise ValueError(f"workers ({workers}) and prefetch ({prefetch}) must be >= 1")
        self.workers, self.depth, self.persistent = workers, workers * prefetch, persistent
        self.pin = pin_memory and torch.cuda.is_available()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`fn(item)` for every item, in order, computed ahead by the pool; an exception in `fn` is raised here."""
        pool = self._open()
        pending: collections.deque[concurrent.futures.Future] = collections.deque()
        source = iter(items)
        try:
            for item in source:
                pending.append(pool.submit(self._build, fn, item))
                if len(pending) >= self.depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            if not self.persistent:
                self.close()

    def _build(self, fn: Callable[[T], R], item: T) -> R:
        out = fn(item)
        return _pinned(out) if self.pin else out

    def _open(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="tunesmith-batching"
            )
        return self._pool

    def close(self) -> None:
        """Stop the threads (after the batches being built)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _pinned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pinned(v) for k, v in value.items()}
    return value.pin_memory() if isinstance(value, torch.Tensor) else value
