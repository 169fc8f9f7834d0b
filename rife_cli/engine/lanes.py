"""CPU lanes: independent pieces of work run side by side, each on its own single-threaded worker.

With PyTorch's intra-op threads every operator splits its work over all cores and meets at a
barrier: hundreds of barriers per frame pair, most operators too small to split well, and
NNPACK's Winograd convolutions (rife_cli.models.transforms.winograd) bring a second thread pool whose
spinning workers compete with OpenMP's. Two frame pairs (or the two mirrored halves of one v3.x
pair) share no data until they are done, so on the CPU the engine runs them in lanes instead: one
worker thread per core, each with one intra-op thread. Measured on this project's 2-core CPU, 720p
v3.6 per pair: 1.44 s with two intra-op threads, 1.07-1.09 s in two lanes (Winograd at every level,
which single-threaded NNPACK wins everywhere; see winograd.MIN_POSITIONS).

Lanes are threads that stay up between calls (threads per call measured 3 % slower: each new thread
sets its thread count and allocates its workspaces again) until `close()`, which the pipeline calls
at the end of every run so that no thread outlives it. A `map` called from inside a lane
runs serially there, so nested use (the v3.x network's mirrored halves inside a pair's lane) never
waits on a lane that is waiting for it.
"""

from __future__ import annotations

import contextvars
import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait

import torch

from ..pipeline.queues import POLL_SECONDS

_local = threading.local()
_STOP = object()
_serials = itertools.count()


def in_lane() -> bool:
    return getattr(_local, "lane", False)


# Seconds close() waits for each lane to stop (a pair takes well under this at any size).
CLOSE_WAIT = 60


class Lanes:
    """Up to `count` worker threads, each running PyTorch with `threads` intra-op threads. They
    start on the first `map` that needs them and stop on `close()`; a later `map` starts them
    again."""

    def __init__(self, count: int, threads: int = 1):
        self.count = count
        self.threads = threads
        self.name = f"rife-lane{next(_serials)}"  # its threads are name-0, name-1, ...
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()

    def _start(self) -> None:
        with self._lock:
            if self._workers:
                return
            own_threads = torch.get_num_threads()
            ready = threading.Barrier(self.count + 1)
            self._workers = [
                threading.Thread(
                    target=self._work, args=(ready,), name=f"{self.name}-{i}", daemon=True
                )
                for i in range(self.count)
            ]
            for w in self._workers:
                w.start()
            ready.wait()
            # Each lane's torch.set_num_threads also set PyTorch's process-wide default (what new
            # threads start with); the caller's own count is put back.
            torch.set_num_threads(own_threads)

    def _work(self, ready: threading.Barrier) -> None:
        torch.set_num_threads(self.threads)  # this thread's OpenMP team size
        # PyTorch initialises a thread's count from its process-wide default on the thread's first
        # query; make that happen now, while the default is still ours (the caller restores its).
        torch.get_num_threads()
        _local.lane = True
        ready.wait()
        jobs = self._jobs
        while (job := jobs.get()) is not _STOP:
            future, fn = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    future.set_exception(exc)

    def map(self, fn: Callable, items: Iterable) -> list:
        """[fn(item) for item in items], the items spread over the lanes; the caller's inference
        mode, autocast and context variables hold inside. Serial when called from a lane."""
        items = list(items)
        if in_lane() or len(items) < 2 or self.count < 2:
            return [fn(item) for item in items]
        self._start()
        futures = []
        for item in items:
            future: Future = Future()
            self._jobs.put((future, _with_caller_state(fn, item)))
            futures.append(future)
        # Wait for all before raising, so that no lane still works on this call afterwards (in
        # steps, so that a Ctrl-C is handled meanwhile when this is the main thread).
        while wait(futures, timeout=POLL_SECONDS).not_done:
            pass
        errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the worker threads, if running (idempotent). A lane that does not stop within
        CLOSE_WAIT is left behind (a daemon thread): a test run was seen to hang for good here,
        a lane's native compute threads spinning after the writer had failed (a full disk), and
        closing must never hang the process that reports the error."""
        with self._lock:
            for _ in self._workers:
                self._jobs.put(_STOP)
            for w in self._workers:
                if w is not threading.current_thread():
                    w.join(timeout=CLOSE_WAIT)
            self._workers = []


def _with_caller_state(fn: Callable, item) -> Callable[[], object]:
    """fn(item) as a closure that re-enters, in whichever thread runs it, the thread-local states
    the network depends on: inference/grad mode, CPU autocast and context variables."""
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu")
    context = contextvars.copy_context()

    def run():
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=dtype, enabled=autocast),
        ):
            return context.run(fn, item)

    return run
