"""The networks against frames made by the reference implementation (CPU, fp32, BGR, truncation)."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from conftest import GOLDEN

from rife_cli.engine import Request

PAIRS = ["I0", "I1", "I2"]


def check_equal(got: np.ndarray, ref: np.ndarray) -> None:
    diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    exact = float((diff == 0).mean())
    assert diff.max() <= 1
    # The reference's truncation turns float noise at level boundaries into 1-level flips; on this
    # CPU/torch 0.04-0.37 % of pixels flip (symmetrically up and down), never more than 1 level.
    assert exact >= 0.995, exact


def run(engine, pair: str, ts: list[Fraction]) -> list[np.ndarray]:
    a = cv2.imread(str(GOLDEN / pair / "frame0.png"))
    b = cv2.imread(str(GOLDEN / pair / "frame1.png"))
    x = engine.to_tensor([a, b])
    made = engine.make(x[0:1], x[1:2], [Request(0, t) for t in ts])
    return [engine.to_arrays(m, *a.shape[:2], np.uint8, rounding="truncate")[0] for m in made]


@pytest.mark.parametrize("pair", PAIRS)
def test_v36_exp2(engine_v36, pair):
    got = run(engine_v36, pair, [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)])
    for i, frame in enumerate(got, 1):
        check_equal(frame, cv2.imread(str(GOLDEN / pair / f"v3.6_exp2_{i}.png")))


@pytest.mark.parametrize("pair", PAIRS)
def test_v36_ratio_by_bisection(engine_v36, pair):
    t = engine_v36.timestep_for_ratio(0.3)
    assert t == Fraction(19, 64)  # 0.296875, where the reference's bisection stops
    (got,) = run(engine_v36, pair, [t])
    check_equal(got, cv2.imread(str(GOLDEN / pair / "v3.6_ratio0.3.png")))


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize(
    "t,name", [(Fraction(1, 2), "v4.0_t0.50"), (Fraction(3, 10), "v4.0_t0.30")]
)
def test_v40_timesteps(engine_v40, pair, t, name):
    (got,) = run(engine_v40, pair, [t])
    check_equal(got, cv2.imread(str(GOLDEN / pair / f"{name}.png")))


def test_v3_refuses_non_dyadic_timestep(engine_v36):
    from rife_cli.errors import ModelError

    with pytest.raises(ModelError, match="v4.0"):
        engine_v36.check_timesteps([Fraction(1, 3)])


def test_batched_pairs_equal_single_pairs(engine_v40):
    """Several pairs and timesteps in one forward give what one pair at a time gives."""
    a = cv2.imread(str(GOLDEN / "I0" / "frame0.png"))
    b = cv2.imread(str(GOLDEN / "I0" / "frame1.png"))
    x = engine_v40.to_tensor([a, b, b, a])
    batched = engine_v40.make(
        x[0:2], x[2:4], [Request(0, Fraction(1, 3)), Request(1, Fraction(1, 2))]
    )
    single = engine_v40.make(x[1:2], x[3:4], [Request(0, Fraction(1, 2))])
    assert float((batched[1] - single[0]).abs().max()) < 1e-4


def test_half_precision_overflow_falls_back_to_fp32():
    """A pair whose half-precision output is not finite is redone in fp32 and counted."""
    import torch

    from rife_cli.engine import Interpolator

    class OverflowsInHalf(torch.nn.Module):
        family, pad_base = "v4", 32

        def forward(self, a, b, t, scale=1.0):
            out = (a + b) / 2
            if torch.is_autocast_enabled("cpu"):
                out = out.clone()
                out[0] = float("inf")  # the first pair of the batch overflows
            return out

    engine = Interpolator("overflow", device="cpu", precision="bf16", network=OverflowsInHalf())
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 200, np.uint8)
    (mid,) = engine.interpolate(a, b, [0.5])
    assert np.all(mid == 150)
    assert engine.fp32_fallbacks == 1


@pytest.mark.parametrize("model", ["v3.6", "v4.0"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_within_45_db_of_fp32(model, precision, request):
    """Half precision runs the convolutions only: flows, masks and warps stay fp32 (v4.0 in bf16
    was 31-37 dB from fp32 while its flows were accumulated in bf16)."""
    from conftest import psnr

    engine = request.getfixturevalue("engine_v36" if model == "v3.6" else "engine_v40")
    for pair in PAIRS:
        a = cv2.imread(str(GOLDEN / pair / "frame0.png"))
        b = cv2.imread(str(GOLDEN / pair / "frame1.png"))
        (full,) = engine.interpolate(a, b, [0.5])
        # fp16 is a CUDA option; CPU autocast runs the same fp16 arithmetic here, slowly.
        engine.precision = precision
        try:
            (half,) = engine.interpolate(a, b, [0.5])
        finally:
            engine.precision = "fp32"
        assert psnr(half, full) >= 45, (pair, psnr(half, full))
