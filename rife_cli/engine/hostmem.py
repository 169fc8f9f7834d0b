"""Host memory: keep freed blocks for reuse instead of returning them to the OS (glibc).

Every forward pass on the CPU allocates activations of tens of MiB (a 720p v3.6 pair: dozens of
40-85 MiB tensors). glibc serves blocks that large with a fresh mmap and unmaps them on free, so
each one is page-faulted in again, zero-filled by the kernel, on every pass. Measured on this
project's 2-core CPU, 720p v3.6 fp32 per pair: 2.40 s with the default allocator, 2.10 s with mmap
off, 1.77 s with mmap off and no trimming (peak RSS 915 -> 1,115 MiB). Peak resident memory is what
the largest pass needs plus fragmentation; it is simply not handed back between passes.

Threads other than the main one (the CPU lanes, rife_cli.engine.lanes) would get glibc arenas of their
own, whose heaps hold at most 64 MiB: larger blocks are mmapped there whatever the settings, and
freed heaps are unmapped. One arena for the whole process keeps their blocks reusable too (720p
v3.6 in two lanes: 1.50 s per pair and about 100,000 page faults per pass with per-thread arenas,
1.20 s and none with one; the lock it shares is taken a few hundred times per pair).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Fresh memory the first batch of a 720p v3.6 run touched in two CPU lanes: 425,795 page faults,
# about 940 bytes per pixel per lane (the first batch took 0.5-0.9 s longer than later ones).
FIRST_PASS_BYTES_PER_PIXEL = 940

_kept = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the reusable heap and never trim it. Process-wide, idempotent;
    False where the C library is not glibc (nothing changes there)."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl's mallopt is a no-op
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # A trim threshold of 2^31-1 bytes keeps everything freed; no mmap puts every block on the heap;
    # one arena puts every thread's blocks there.
    _kept = all(
        mallopt(param, value)
        for param, value in (
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_MMAP_MAX, 0),
            (_M_ARENA_MAX, 1),
        )
    )
    return _kept


def first_pass_bytes(width: int, height: int, lanes: int) -> int:
    """What to prefault for a run on frames of this size: the estimate above, at most a quarter of
    the memory available now."""
    want = width * height * lanes * FIRST_PASS_BYTES_PER_PIXEL
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    want = min(want, int(line.split()[1]) * 1024 // 4)
    except OSError:
        return 0
    return want


def prefault(nbytes: int) -> threading.Thread | None:
    """Touch `nbytes` of fresh heap in a background thread, then free it. With keep_freed_memory
    the pages stay mapped, so the first forward pass finds them instead of faulting them in one by
    one. Worth it only while the other cores would idle anyway (PyTorch's import at start-up)."""
    if not keep_freed_memory() or nbytes <= 0:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def touch():
        block = libc.malloc(nbytes)
        if block:
            ctypes.memset(block, 0, nbytes)  # ctypes calls release the GIL: the import goes on
            libc.free(block)

    thread = threading.Thread(target=touch, name="rife-prefault", daemon=True)
    thread.start()
    return thread
