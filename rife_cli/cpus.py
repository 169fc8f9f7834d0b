"""The CPU the process may use: its cores and how many lanes (rife_cli.lanes) they make."""

from __future__ import annotations

import os

# CPU lanes at most: each holds a pair's activations (a 720p v3.6 pair: about 0.5 GB).
MAX_LANES = 8


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return max(1, len(os.sched_getaffinity(0)))


def default_lanes() -> int:
    return min(usable_cores(), MAX_LANES)
