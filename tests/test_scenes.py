"""Scene-cut thumbnails: large frames box-averaged in two steps, the same cuts found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from clips import moving_frame

from rife_cli import scenes


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
