"""Host time per frame of the reader's --dedup and scene stages at 1920x1080 (best of 3 runs over
40 frames of a golden frame panning 8 px a frame).

    python scripts/stage_cost.py
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rife_cli.pipeline import dedup, scenes
from rife_cli.video.source import SourceFrame

GOLDEN = ROOT.parent / "shared" / "golden"


def main() -> None:
    img = cv2.resize(cv2.imread(str(GOLDEN / "I0" / "frame0.png")), (1920, 1080))
    frames = [np.roll(img, 8 * i, axis=1) for i in range(40)]

    def stream():
        return (SourceFrame(i, Fraction(i, 24), None, f) for i, f in enumerate(frames))

    stages = {
        "thumbnail only": lambda: [scenes.thumbnail(f.image) for f in stream()],
        "scene stage (thumbnail included)": lambda: list(scenes.SceneStage().filter(stream())),
        "dedup stage": lambda: list(dedup.Dedup().filter(stream())),
    }
    for name, run in stages.items():
        best = min(_timed(run) for _ in range(3)) / len(frames)
        print(f"{name}: {best * 1000:.2f} ms/frame")


def _timed(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
