"""The CPU the process may use: its cores and how many lanes (rife_cli.engine.lanes) they make."""

from __future__ import annotations

import functools
import os
from pathlib import Path

# CPU lanes at most: each holds a pair's activations (a 720p v3.6 pair: about 0.5 GB).
MAX_LANES = 8


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return max(1, len(os.sched_getaffinity(0)))


def default_lanes() -> int:
    return min(usable_cores(), MAX_LANES)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where it does not)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def winograd_pays() -> bool:
    """NNPACK's Winograd kernels are AVX2 code: they beat oneDNN's direct fp32 convolutions on an
    AVX2-only CPU (v3.6 720p pair 1.70 -> 1.44 s on the 2-core EPYC) but lose to oneDNN's AVX-512
    ones (2.07 vs 1.63 s a pair on the 2-core Xeon with AVX-512 and AMX, same-process A/B)."""
    return "avx512f" not in cpu_flags()
