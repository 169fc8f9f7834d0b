"""Scene cuts, flashes and fades between consecutive frames, from small colour thumbnails.

A pair is a cut candidate when its thumbnails' SSIM, after the global motion between them is
undone (pans, camera shake), is below the threshold. A candidate is not a cut when it is one edge
of a single-frame flash (the frames either side of it are alike: nothing is blended across it
either, but it is not counted as a cut) or part of a fade or dissolve (a frame is the mean of its
neighbours, or one frame is the other's gain and offset: the network blends through it). Measured
on a labelled set with scripts/scene_eval.py (README: Animation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# Below this similarity (after motion is undone) two frames may be different shots; chosen on the
# labelled set (0.2, the reference's value without alignment, lost 6 % recall there).
DEFAULT_THRESHOLD = 0.3
THUMB = 32
# What the scene stage says about the edge between a frame and the one before it.
CUT = "cut"  # another shot: nothing blended across, counted
FLASH = "flash"  # into or out of a one-frame flash: nothing blended across, not a cut
SIZE = "size"  # the picture changed size (set by the reader): nothing blended across, not counted
# the timestamps jump forward by more than a moment (set by the reader: joined or damaged
# recordings): the gap is held, not filled with a morph between unrelated pictures
JUMP = "jump"
READER = (SIZE, JUMP)  # edges the reader knows, which no picture comparison overrides
HARD = (CUT, FLASH, SIZE, JUMP)
# A frame within this SSIM of the mean of its neighbours is inside a linear blend (dissolve, fade).
BLEND_SIMILARITY = 0.8
# One frame is another's gain and offset (a fade, to or from black or white) when the fit leaves
# less than this fraction of the larger thumbnail's standard deviation.
FADE_RESIDUAL = 0.1
# A frame this much brighter or darker than both its neighbours (mean, 0-1) may be a flash.
FLASH_STEP = 0.1
MAX_SHIFT = THUMB // 4  # thumbnail pixels of global motion undone: a quarter of the frame


def thumbnail(image: np.ndarray) -> np.ndarray:
    """32x32 colour (BGR) float in [0, 1], the only thing the detector keeps per frame."""
    img = image if image.ndim == 2 else np.ascontiguousarray(image[:, :, :3])
    # Box-average by a whole factor first (OpenCV's fast path), leaving at least 4x the thumbnail,
    # then to 32x32: 1080p 2.2 ms instead of 7.5 ms in one step (4K 7.3 vs 30.7 ms), a few levels
    # apart at sharp edges, where the boxes' borders fall differently.
    k = min(img.shape[0], img.shape[1]) // (4 * THUMB)
    if k > 1:
        h, w = img.shape[0] // k, img.shape[1] // k
        img = cv2.resize(img[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)
    small = cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float64)
    top = 65535.0 if image.dtype == np.uint16 else (1.0 if image.dtype == np.float32 else 255.0)
    return small / top


def thumb_of(frame) -> np.ndarray:
    """A SourceFrame's thumbnail, made once (planes-mode frames come with theirs)."""
    if frame.thumb is None:
        frame.thumb = thumbnail(frame.image)
    return frame.thumb


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over 7x7 Gaussian windows (sigma 1.5) and channels of two thumbnails."""
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim.mean())


_WINDOW = cv2.createHanningWindow((THUMB, THUMB), cv2.CV_32F)


def _gray(t: np.ndarray) -> np.ndarray:
    t = t.astype(np.float32)
    return t if t.ndim == 2 else cv2.cvtColor(t[:, :, :3], cv2.COLOR_BGR2GRAY)


def aligned_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two thumbnails after b is moved back by the global shift phase correlation finds
    between them (over the part both show), or as they are, whichever is higher."""
    plain = similarity(a, b)
    (dx, dy), _ = cv2.phaseCorrelate(_gray(a), _gray(b), _WINDOW)
    k = int(np.ceil(max(abs(dx), abs(dy))))
    if k == 0 or k > MAX_SHIFT:
        return plain
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    moved = cv2.warpAffine(b, m, (b.shape[1], b.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    inner = (slice(k, b.shape[0] - k), slice(k, b.shape[1] - k))
    return max(plain, similarity(a[inner], moved[inner]))


def is_cut(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Whether two thumbnails may be different shots (a candidate; see SceneStage)."""
    return threshold > 0 and aligned_similarity(a, b) < threshold


def _between(prev: np.ndarray, mid: np.ndarray, nxt: np.ndarray) -> bool:
    """Whether `mid` is the mean of its neighbours, with steps of like size either side."""
    d1, d2 = np.abs(mid - prev).mean(), np.abs(nxt - mid).mean()
    if d1 > 3 * d2 or d2 > 3 * d1:
        return False  # a cut into a still shot: one big step, then none
    return similarity(mid, (prev + nxt) / 2) >= BLEND_SIMILARITY


def _gain_and_offset(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether b is a * g + o (a fade's step) up to FADE_RESIDUAL. Not symmetric: a black frame
    is any frame times 0, but no gain makes a picture out of it."""
    ga, gb = _gray(a).ravel().astype(np.float64), _gray(b).ravel().astype(np.float64)
    x = np.stack([ga, np.ones_like(ga)], 1)
    coef, *_ = np.linalg.lstsq(x, gb, rcond=None)
    residual = np.sqrt(np.mean((x @ coef - gb) ** 2))
    return residual <= FADE_RESIDUAL * max(ga.std(), gb.std(), 1e-6)


@dataclass
class SceneStage:
    """Tags each frame of a stream with the edge before it (`frame.edge`: "", CUT or FLASH), one
    frame behind the stream: the frame after a pair decides whether it is a flash or a blend."""

    threshold: float = DEFAULT_THRESHOLD
    flashes: int = 0  # flash frames found

    def filter(self, frames: Iterable) -> Iterator:
        win: list = []  # the last frames: [i - 2, i - 1, i, i + 1], frame i decided next
        cand: dict[int, bool] = {}  # by id of the later frame: its pair is a cut candidate
        for frame in frames:
            thumb_of(frame)
            if win:
                cand[id(frame)] = is_cut(win[-1].thumb, frame.thumb, self.threshold)
            win.append(frame)
            if len(win) >= 2:
                yield self._decide(win[:-1], win[-1], cand)
            if len(win) > 3:
                cand.pop(id(win.pop(0)), None)
        if win:
            yield self._decide(win, None, cand)

    def _flash(self, a, f, b, cand: dict[int, bool]) -> bool:
        """Whether f is a one-frame flash between a and b: different from both (cut candidates
        both sides, or brighter or darker than both by FLASH_STEP), which are alike."""
        spike = (f.thumb.mean() - a.thumb.mean(), f.thumb.mean() - b.thumb.mean())
        bright = min(abs(spike[0]), abs(spike[1])) > FLASH_STEP and spike[0] * spike[1] > 0
        if not bright and not (cand.get(id(f)) and cand.get(id(b))):
            return False
        return not is_cut(a.thumb, b.thumb, self.threshold)

    def _decide(self, past: list, nxt, cand: dict[int, bool]):
        """The edge before past[-1], with up to two frames before it and one after."""
        frame = past[-1]
        if frame.edge in READER:
            return frame  # the reader's: the pictures on either side are not comparable
        frame.edge = ""
        if len(past) < 2:
            return frame
        prev = past[-2]
        before = past[-3] if len(past) > 2 else None
        # Into a flash (frame is the flash) or out of one (prev was).
        into = nxt is not None and self._flash(prev, frame, nxt, cand)
        if into or (before is not None and self._flash(before, prev, frame, cand)):
            frame.edge = FLASH
            self.flashes += into
            return frame
        if not cand.get(id(frame)):
            return frame
        blend = (nxt is not None and _between(prev.thumb, frame.thumb, nxt.thumb)) or (
            before is not None and _between(before.thumb, prev.thumb, frame.thumb)
        )
        fade = _gain_and_offset(prev.thumb, frame.thumb) or _gain_and_offset(
            frame.thumb, prev.thumb
        )
        if not blend and not fade:
            frame.edge = CUT
        return frame
