"""The video pipeline: plan a job (run.prepare), then read -> stages -> infer -> write
(run.interpolate_video), with the resume journal (resume) and the byte-bounded queues and worker
threads between the steps (queues). The stages beside it: which frames to make (timing), scene cuts
and flashes (scenes), repeated frames (dedup).

run's names are loaded on first use (`from rife_cli.pipeline import interpolate_video`): the video
reader imports the scenes stage, and run imports the reader.
"""

from __future__ import annotations

_SUBMODULES = {"dedup", "queues", "resume", "run", "scenes", "timing"}


def __getattr__(name: str):
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)  # a submodule: the import system loads it
    from . import run

    try:
        return getattr(run, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
