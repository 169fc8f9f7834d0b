"""Scene cuts: thumbnails box-averaged in two steps; pans, shake, flashes and fades are not cuts."""

from __future__ import annotations

import itertools
from fractions import Fraction

import cv2
import numpy as np
import pytest
from clips import moving_frame
from conftest import GOLDEN

from rife_cli.pipeline import scenes
from rife_cli.video.source import SourceFrame


@pytest.mark.parametrize("w,h", [(1280, 720), (1920, 1080), (130, 100)])
def test_thumbnail_is_the_box_average(w, h):
    img = cv2.resize(moving_frame(3, 160, 90, cut_at=2), (w, h), interpolation=cv2.INTER_NEAREST)
    one_step = cv2.resize(img, (scenes.THUMB, scenes.THUMB), interpolation=cv2.INTER_AREA) / 255.0
    thumb = scenes.thumbnail(img)
    assert thumb.shape == (scenes.THUMB, scenes.THUMB, 3) and thumb.dtype == np.float64
    # Box edges fall a little differently in two steps: a few levels at sharp edges, at most.
    assert np.abs(thumb - one_step).max() <= 8 / 255
    assert np.abs(thumb - one_step).mean() <= 1 / 255


def test_cuts_found_at_720p():
    def frame(i, cut_at=None):
        return cv2.resize(moving_frame(i, 160, 90, cut_at), (1280, 720))

    same_shot = scenes.thumbnail(frame(4)), scenes.thumbnail(frame(5))
    new_shot = scenes.thumbnail(frame(4)), scenes.thumbnail(frame(5, cut_at=5))
    assert not scenes.is_cut(*same_shot, scenes.DEFAULT_THRESHOLD)
    assert scenes.is_cut(*new_shot, scenes.DEFAULT_THRESHOLD)


# ----- the scene stage on real frames: pans and shake are not cuts, flashes and fades are not
# cuts, another shot is.

W, H = 320, 180


def big(pair: str) -> np.ndarray:
    """A real frame (tests/data/golden) at 3x, to move a camera window over."""
    img = cv2.imread(str(GOLDEN / pair / "frame0.png"))
    return cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)


def view(img: np.ndarray, x: float, y: float) -> np.ndarray:
    m = np.float32([[1, 0, x], [0, 1, y]])
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def edges(frames: list[np.ndarray]) -> tuple[list[str], scenes.SceneStage]:
    stage = scenes.SceneStage()
    stream = (SourceFrame(i, Fraction(i, 24), None, f) for i, f in enumerate(frames))
    return [f.edge for f in stage.filter(stream)], stage


def pan(pair: str, n: int, step: float, start=(40.0, 60.0)) -> list[np.ndarray]:
    return [view(big(pair), start[0] + step * i, start[1] + step * i / 3) for i in range(n)]


def test_a_fast_pan_is_not_a_cut():
    frames = pan("I1", 10, 40)  # an eighth of the width a frame
    thumbs = [scenes.thumbnail(f) for f in frames]
    plain = [scenes.similarity(a, b) for a, b in itertools.pairwise(thumbs)]
    assert min(plain) < scenes.DEFAULT_THRESHOLD  # without undoing the motion: "cuts"
    assert edges(frames)[0] == [""] * 10


def test_camera_shake_is_not_a_cut():
    rng = np.random.default_rng(3)
    img = big("I0")
    frames = [view(img, 300 + rng.uniform(-16, 16), 200 + rng.uniform(-16, 16)) for _ in range(12)]
    assert edges(frames)[0] == [""] * 12


def test_another_shot_is_a_cut():
    frames = pan("I0", 6, 3) + pan("I2", 6, 3)
    assert edges(frames)[0] == [""] * 6 + ["cut"] + [""] * 5


@pytest.mark.parametrize("level", [255, 0, None])
def test_a_one_frame_flash_is_not_a_cut(level):
    frames = pan("I1", 9, 4)
    flash = frames[4] * 0.3 + 255 * 0.7 if level is None else np.full_like(frames[4], level)
    frames[4] = flash.astype(np.uint8)
    found, stage = edges(frames)
    assert found == [""] * 4 + ["flash", "flash"] + [""] * 3
    assert stage.flashes == 1


def test_fades_and_dissolves_are_not_cuts():
    a, b = pan("I0", 8, 2), pan("I2", 8, 2, start=(500.0, 300.0))
    out = [(f * (1 - (j + 1) / 6)).astype(np.uint8) for j, f in enumerate(a[:6])]  # to black
    inn = [(f * (j / 6)).astype(np.uint8) for j, f in enumerate(b[:6])]  # from black
    dissolve = [cv2.addWeighted(a[j], 1 - (j + 1) / 6, b[j], (j + 1) / 6, 0) for j in range(5)]
    assert "cut" not in edges(a[:2] + out + inn + b[6:])[0]
    assert "cut" not in edges(a[:3] + dissolve + b[5:])[0]
    # the same two shots joined directly: a cut
    assert edges(a[:4] + b[4:])[0].count("cut") == 1


def test_a_flash_is_not_blended_into_its_neighbours(tmp_path):
    from clips import decode, interpolate_blended, make_video

    frames = [moving_frame(i, 128, 72) for i in range(10)]
    frames[5] = np.full_like(frames[5], 255)
    src = make_video(tmp_path / "a.mkv", n=10, codec="ffv1", frames=frames)
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=2, codec="ffv1")
    assert s.flashes == 1 and s.scene_cuts == 0
    source, _, _ = decode(src)
    out, _, _ = decode(tmp_path / "o.mkv")
    # Outputs 16-23 lie between source frames 4, 5 (the flash) and 6: each is the nearer one.
    for k, expect in ((17, 4), (18, 4), (19, 5), (21, 5), (22, 5), (23, 6)):
        assert np.array_equal(out[k], source[expect]), k
    assert not np.array_equal(out[13], source[3])  # elsewhere, frames are made as usual
    with_dedup = interpolate_blended(src, tmp_path / "d.mkv", exp=2, codec="ffv1", dedup=True)
    assert with_dedup.flashes == 1 and with_dedup.duplicates == 0
