"""The engine: what to make (interpolator: device-independent), and how it runs on the CPU (cpu,
with lanes, cpus and hostmem) or on CUDA (cuda: streams, pinned uploads, memory model; colour: YUV
planes converted on the device). Only the backend a run uses is imported.

The names below are loaded on first use: hostmem must set the C allocator up before PyTorch is
imported, and the video reader uses colour's plain-data types, so importing this package must not
import PyTorch by itself.
"""

from __future__ import annotations

__all__ = [
    "MAX_DYADIC_LEVEL",
    "PRECISIONS",
    "SCALES",
    "Interpolator",
    "Request",
    "bisection_target",
    "cpu_has_fast_bf16",
    "dyadic_level",
    "interpolator_for",
    "load_model",
    "pick_device",
    "pick_precision",
]


def __getattr__(name: str):
    if name in __all__:
        from . import interpolator

        return getattr(interpolator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
