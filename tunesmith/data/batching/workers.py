"""Background assembly of micro-batches (`batching_workers`): a thread builds the next batches while the model
computes on the current one (tensor work releases the GIL)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield `items` in order while one background thread produces up to `depth` of them ahead.

    An exception in the producer is re-raised in the consumer; closing the generator stops the producer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(buffer, item, stop):
                    return
            _put(buffer, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(buffer, exc, stop)

    thread = threading.Thread(target=produce, name="tunesmith-batching", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put(buffer: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` unless the consumer stopped; False once it has."""
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
