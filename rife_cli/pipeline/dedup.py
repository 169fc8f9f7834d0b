"""Repeated frames (animation drawn on twos and threes): found and dropped before interpolation,
so that the distinct drawings are interpolated on their real timeline.

A stage on the reader's stream of SourceFrames: frames in, the frames to interpolate between out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..video.source import SourceFrame

# Two frames are the same drawing when no 16x16 block of their luma differs by more than this on
# average (8-bit levels). Compression left at most 2.6 levels on held drawings (x264 CRF 14-28,
# x265 CRF 18-28, with and without per-frame film grain); the smallest real change measured (a
# 10x6 px mouth opening on a 640x360 frame) gave 9.5 and more: 5 is about 2x from both
# (scripts/dedup_noise.py; the table is in the README).
DEFAULT_THRESHOLD = 5.0
BLOCK = 16  # pixels: codecs' own block size, so the noise per block is the same at any resolution
# The longest hold that is still animation: drawings held up to 4 frames at 24 fps ("on fours",
# limited animation); a drawing held longer is a pause, kept as one. In seconds, so that 30 and
# 60 fps sources (telecined or doubled animation) hold as long.
HOLD_SECONDS = Fraction(4, 24)


def max_hold_for(rate: Fraction) -> int:
    """The default --dedup-max-hold at a source rate: 4 at 23.976-25 fps, 5 at 30, 10 at 60."""
    return max(2, round(rate * HOLD_SECONDS))


@dataclass
class Luma:
    """A frame's luma plane as decoded (uint8/uint16/float32) and the factor to 8-bit levels."""

    plane: np.ndarray
    scale: float


def luma(frame: SourceFrame) -> Luma:
    """The frame's luma, from its BGR image or its planes; full-range 8-bit levels after `scale`."""
    if frame.image is not None:
        img = frame.image
        if img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2GRAY)
        scale = {np.dtype(np.uint16): 1 / 257, np.dtype(np.float32): 255.0}.get(img.dtype, 1.0)
        return Luma(img, scale)
    planes = frame.planes
    # A limited-range step is bigger, a 10-bit one smaller: the same threshold in 8-bit levels.
    return Luma(planes.data[: planes.height], planes.luma_scale)


def difference(a: Luma, b: Luma) -> float:
    """The largest mean absolute difference over BLOCK x BLOCK blocks of two lumas (8-bit
    levels). A mean over the whole frame would drown a moving mouth in compression noise; a
    single pixel's difference would be the noise itself."""
    diff = cv2.absdiff(a.plane, b.plane)  # in the decoded type: a quarter of the float work
    h, w = diff.shape
    blocks = cv2.resize(
        diff.astype(np.float32),
        (math.ceil(w / BLOCK), math.ceil(h / BLOCK)),
        interpolation=cv2.INTER_AREA,
    )
    return float(blocks.max()) * a.scale


@dataclass
class Dedup:
    """Drops the frames that repeat the last frame kept. A drawing held longer than `max_hold`
    frames is a pause: its last copy is kept too, so the pause stays still and the next drawing
    comes at its own time. So is the last copy before a scene cut (`hard`), so that the cut falls
    where it did, and the stream's last frame, so that the output ends where the input does."""

    threshold: float = DEFAULT_THRESHOLD
    max_hold: int = 4
    # Whether two frames are separated by a cut (nothing blended across): the scene detector's say.
    hard: Callable[[SourceFrame, SourceFrame], bool] | None = None
    dropped: int = 0

    def filter(self, frames: Iterable[SourceFrame]) -> Iterator[SourceFrame]:
        kept: SourceFrame | None = None
        kept_luma = None
        last: SourceFrame | None = None  # the latest repeat of `kept`, not passed on
        repeats = 0
        for frame in frames:
            y = luma(frame)
            if kept is not None and difference(kept_luma, y) <= self.threshold:
                last, repeats = frame, repeats + 1
                continue
            if last is not None:
                if repeats + 1 > self.max_hold or (
                    self.hard is not None and self.hard(last, frame)
                ):
                    yield last
                    repeats -= 1
                self.dropped += repeats
            kept, kept_luma, last, repeats = frame, y, None, 0
            yield frame
        if last is not None:  # the stream ends inside a hold
            self.dropped += repeats - 1
            yield last
