"""How pairs are gathered into batches: runs of pairs that need no network never pile up."""

from __future__ import annotations

import numpy as np
import pytest
from clips import decode, interpolate_blended, make_video

from rife_cli import pipeline


@pytest.mark.parametrize(
    "name,options,cuts",
    [
        # every pair a scene cut: a slideshow of unrelated pictures
        ("all cuts", {"exp": 1}, 39),
        # --fps at the source rate: every output frame is a source frame, nothing to make
        ("no network", {"fps": "25", "scene_threshold": 0}, 0),
    ],
)
def test_pairs_without_network_do_not_pile_up(tmp_path, monkeypatch, name, options, cuts):
    """The batch (and the frames its pairs hold) stays within twice the engine's batch size, so
    frames flow on to the writer and into segments instead of gathering until the end."""
    frames = None
    if cuts:
        frames = [
            np.random.RandomState(i).randint(0, 256, (48, 64, 3), np.uint8) for i in range(40)
        ]
    src = make_video(tmp_path / "a.mkv", n=40, w=64, h=48, codec="ffv1", frames=frames)
    held = []
    real = pipeline._Run.flush

    def counting(self, batch, q):
        held.append(len(batch))
        return real(self, batch, q)

    monkeypatch.setattr(pipeline._Run, "flush", counting)
    s = interpolate_blended(src, tmp_path / "o.mkv", codec="ffv1", **options)  # batch size 2
    assert s.scene_cuts == cuts
    assert s.frames_out == len(decode(tmp_path / "o.mkv")[0]) == 40 * (2 if cuts else 1)
    assert sum(held) == 39  # every pair went through a batch
    assert max(held) <= 4, held
