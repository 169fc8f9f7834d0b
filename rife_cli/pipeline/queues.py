"""A queue bounded in bytes and a worker thread that hands its exception to the caller."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

DONE = object()  # sentinel a producer puts last, also after failing
# How long the main thread blocks at a time: a signal the kernel hands to another thread only
# runs its Python handler once the main thread is back in the interpreter (Ctrl-C must not wait
# for a whole batch).
POLL_SECONDS = 0.1


def wait_for(future):
    """future.result(), waiting in short steps so that signal handlers run meanwhile."""
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except TimeoutError:
            if future.done():  # the result itself was a TimeoutError
                return future.result()


class Cancelled(Exception):
    """The other side of a queue stopped; this side should unwind quietly."""


class ByteQueue:
    """FIFO bounded by the bytes it holds, not by item count: 500 4K frames would be 12 GB."""

    def __init__(self, capacity: int, cancel: threading.Event, max_items: int = 64):
        # Also bounded in count: each decoded frame carries FFmpeg buffers beyond its pixels, which
        # dominate for small frames (seen: RSS growing by hundreds of MiB at 64x48 without this).
        self.max_items = max_items
        self.capacity = capacity
        self.cancel = cancel
        self.used = 0
        self.peak = 0
        self.items: collections.deque = collections.deque()
        self.cond = threading.Condition()

    def put(self, item: Any, nbytes: int = 0) -> None:
        with self.cond:
            # An item larger than the whole capacity still goes through when the queue is empty.
            while self.items and (
                self.used + nbytes > self.capacity or len(self.items) >= self.max_items
            ):
                if self.cancel.is_set():
                    raise Cancelled
                self.cond.wait(0.1)
            self.items.append((item, nbytes))
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            self.cond.notify_all()

    def get(self) -> Any:
        with self.cond:
            while not self.items:
                if self.cancel.is_set():
                    raise Cancelled
                self.cond.wait(0.1)
            item, nbytes = self.items.popleft()
            self.used -= nbytes
            self.cond.notify_all()
            return item


class Worker(threading.Thread):
    """Runs `target`; an exception is kept for the caller (see `check`) and cancels the others."""

    def __init__(self, name: str, target: Callable[[], None], cancel: threading.Event):
        super().__init__(name=f"rife-{name}", daemon=True)
        self._target_fn = target
        self.cancel = cancel
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by check()
            self.error = exc
            self.cancel.set()

    def check(self) -> None:
        if self.error is not None:
            raise self.error
