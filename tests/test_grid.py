"""Stored timestamps -> the exact grid (rife_cli/video/grid.py), as containers round them."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from rife_cli.video.grid import Grid, candidate_rates, find_grid, tolerance

RATES = [
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
]


def stored(rate: Fraction, tick: Fraction, n: int = 300, start: Fraction = Fraction(0), how=round):
    """Frame times as a container with time base `tick` stores them (rounded or truncated)."""
    return [how((start + Fraction(k) / rate) / tick) * tick for k in range(n)]


@pytest.mark.parametrize("rate", RATES, ids=str)
@pytest.mark.parametrize(
    "tick,stated",
    [
        (Fraction(1, 1000), "average"),  # Matroska / WebM: milliseconds
        (Fraction(1, 90000), "average"),  # MPEG-TS
        (Fraction(1, 15360), "average"),  # MP4 as FFmpeg writes it
        (Fraction(1, 1000), "rounded"),  # a stated rate off by rounding (29.97 for 30000/1001)
    ],
)
@pytest.mark.parametrize("start", [Fraction(0), Fraction(37, 25), Fraction(-2, 24)], ids=str)
def test_constant_rates_are_found_exactly(rate, tick, stated, start):
    for how in (round, math.floor):
        times = stored(rate, tick, start=start, how=how)
        said = rate if stated == "average" else Fraction(round(float(rate), 2)).limit_denominator()
        found = find_grid(times, tick, candidate_rates([said]))
        assert found.constant
        assert found.grid.rate == rate
        origin = times[0]
        snapped = [found.grid.snap(origin, t) for t in times]
        assert snapped == [origin + Fraction(k) / rate for k in range(len(times))]


def test_mkv_23976_gives_midpoints_exactly():
    # the file: t = 143/288 where 1/2 was meant
    times = stored(Fraction(24000, 1001), Fraction(1, 1000), start=Fraction(23, 1000))
    grid = find_grid(times, Fraction(1, 1000), candidate_rates([Fraction(24000, 1001)])).grid
    a, b = (grid.snap(times[0], t) for t in times[5:7])
    out = Fraction(48000, 1001)  # 2x: an output frame halfway between them
    i = math.ceil((a - times[0]) * out) + 1
    assert (times[0] + i / out - a) / (b - a) == Fraction(1, 2)


def test_variable_rate_is_not_forced_onto_a_grid():
    # a phone's VFR: steps of 33.2-33.9 ms drifting, in a 1/90000 time base
    times, t = [], Fraction(0)
    for k in range(200):
        times.append(t)
        t += Fraction(2990 + (k * 37) % 60, 90000)
    found = find_grid(times, Fraction(1, 90000), candidate_rates([Fraction(30)]))
    assert found.grid is None and not found.constant


def test_dropped_frames_keep_the_grid_but_are_not_constant():
    times = stored(Fraction(25), Fraction(1, 1000), n=20)
    del times[7:9]
    found = find_grid(times, Fraction(1, 1000), [Fraction(25)])
    assert found.grid.rate == 25 and found.gaps and not found.constant


def test_a_stated_multiple_of_the_rate_is_not_taken_when_the_step_fits_without_gaps():
    # AVI states 50 for a 25 fps stream: its grid holds the frames, but with every other empty
    times = stored(Fraction(25), Fraction(1, 600), n=30)
    found = find_grid(times, Fraction(1, 600), [Fraction(50)])
    assert found.constant and found.grid.rate == 25


def test_tolerance_stays_below_a_quarter_frame():
    assert tolerance(Fraction(1, 1000), Fraction(25)) == Fraction(1, 1000)
    assert tolerance(Fraction(1, 25), Fraction(25)) < Fraction(1, 100)
    g = Grid(Fraction(25), tolerance(Fraction(1, 1000), Fraction(25)))
    assert g.index(Fraction(0), Fraction(41, 1000)) == 1
    assert g.index(Fraction(0), Fraction(45, 1000)) is None


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_a_short_clip_keeps_the_standard_rate_it_states(rate):
    # 24 frames at 24 fps also fit the 23.976 grid within 1 ms: the stated rate wins
    for tick in (Fraction(1, 1000), Fraction(1, 12288)):
        times = stored(rate, tick, n=24)
        found = find_grid(times, tick, candidate_rates([rate]))
        assert found.constant and found.grid.rate == rate
