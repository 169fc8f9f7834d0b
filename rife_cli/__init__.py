"""rife: video frame interpolation with RIFE (ECCV 2022) from the command line and from Python."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Interpolator", "__version__", "interpolate_video", "load_model"]


def __getattr__(name: str):
    # Lazy, so that `rife --help` and the video layer do not pay for importing torch.
    if name in ("Interpolator", "load_model"):
        from . import engine

        return getattr(engine, name)
    if name == "interpolate_video":
        from .pipeline.run import interpolate_video

        return interpolate_video
    raise AttributeError(name)
