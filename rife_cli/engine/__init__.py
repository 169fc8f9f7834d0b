"""The engine, in three rooms: what to make (interpolator: device-independent), and how it runs on
the CPU (cpu: lanes, host memory, Winograd) or on CUDA (cuda: streams, pinned uploads, device
colour, graphs, memory model). Only the backend a run uses is imported."""

from .interpolator import (
    MAX_DYADIC_LEVEL,
    PRECISIONS,
    SCALES,
    Interpolator,
    Request,
    bisection_target,
    cpu_has_fast_bf16,
    dyadic_level,
    interpolator_for,
    load_model,
    pick_device,
    pick_precision,
)

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
