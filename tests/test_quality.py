"""Our fast default path loses nothing against the reference's arithmetic on real image content.

A pan over each golden frame gives a clip with a known middle frame: interpolate the ends with our
default engine (channels-last, phase-form transposed convolutions, Winograd trunks) and with the
reference-like one (NCHW, native operators), and compare both to the true middle by PSNR.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import golden_pair, psnr

from rife_cli.bench import baseline_engine
from rife_cli.engine import Interpolator

STEP = 6  # pixels of pan between the two ends; the true middle is at half of it


@pytest.fixture(scope="module")
def reference_like():
    return baseline_engine("v3.6")  # the same engine `rife bench` measures as the baseline


@pytest.mark.parametrize("pair", ["I0", "I1", "I2"])
def test_default_path_within_0_05_db_of_reference_arithmetic(engine_v36, reference_like, pair):
    img, _ = golden_pair(pair, (896, 512))  # large enough for the Winograd path
    w = img.shape[1] - STEP
    a, mid, b = (img[:, x : x + w] for x in (0, STEP // 2, STEP))
    (ours,) = engine_v36.interpolate(a, b, [0.5])
    (ref,) = reference_like.interpolate(a, b, [0.5])
    # Ignore the columns that enter the frame during the pan: neither side can know them.
    inner = np.s_[:, STEP : w - STEP]
    gain = psnr(ours[inner], mid[inner]) - psnr(ref[inner], mid[inner])
    assert abs(gain) <= 0.05, gain
    assert psnr(ours, ref) >= 50


def test_compiled_network_matches_eager(engine_v36):
    """`--compile` (torch.compile, inductor on the CPU) makes the frames the eager path makes."""
    compiled = Interpolator("v3.6", device="cpu", precision="fp32", compile=True)
    # Large enough for the eager path's Winograd trunk, which the compiled network must leave alone.
    a, b = golden_pair("I1", (896, 512))
    (eager,) = engine_v36.interpolate(a, b, [0.5])
    (got,) = compiled.interpolate(a, b, [0.5])
    (again,) = compiled.interpolate(b, a, [0.5])  # same shape: no recompilation, still right
    (eager_again,) = engine_v36.interpolate(b, a, [0.5])
    assert psnr(got, eager) >= 50
    assert psnr(again, eager_again) >= 50
