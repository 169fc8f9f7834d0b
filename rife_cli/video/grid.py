"""Stored timestamps -> the exact frame grid they were rounded from.

Containers store times in ticks of their time base (Matroska and WebM in milliseconds), so a
constant-rate 23.976 fps stream sits at 0, 42, 83, 125 ms rather than on k * 1001/24000 s. Taken
literally, those times put every output frame a tick off its source frame (no pass-through, and
t = 143/288 where 1/2 was meant). A stream whose every timestamp lies within the container's
rounding of `origin + k / rate` for one rate is placed on that grid exactly; only a stream that
really varies keeps its timestamps. Pure arithmetic on Fractions: no PyAV here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

# Rates worth trying besides what the container says, when it says something near them.
STANDARD_RATES = tuple(
    Fraction(r)
    for r in (
        Fraction(24000, 1001),
        24,
        25,
        Fraction(30000, 1001),
        30,
        48,
        Fraction(48000, 1001),  # 2x of 23.976, as our own outputs and other tools' are
        50,
        Fraction(60000, 1001),
        60,
        Fraction(120000, 1001),
        120,
        12,
        15,
        Fraction(15000, 1001),
        72,
        90,
        100,
        144,
        Fraction(96000, 1001),
        Fraction(240000, 1001),
        240,
    )
)
# Muxers that write from a millisecond-rounded source (a Matroska remux) keep that rounding in a
# finer time base: allow it whatever the time base is.
CONTAINER_ROUNDING = Fraction(1, 1000)


def tolerance(tick: Fraction | None, rate: Fraction) -> Fraction:
    """How far a stored time may lie from its grid point: the container's rounding, and never a
    quarter of a frame or more (then the grid could not be told from its neighbours)."""
    tol = max(tick or 0, CONTAINER_ROUNDING)
    return min(tol, 1 / (4 * rate) - Fraction(1, 10**9))


def candidate_rates(stated: Iterable[Fraction | None]) -> list[Fraction]:
    """The rates the container states (in its order of trust), each not itself standard preceded
    by a standard rate within 0.1 % of it (29.97 written for 30000/1001: over a short stretch both
    grids hold the times, and the standard one is what was meant), then the standard rates within
    1 % of one of them; without repeats."""
    out: list[Fraction] = []
    stated = [Fraction(r) for r in stated if r and r > 0]
    for r in stated:
        # A stated standard rate is what it says (24 is not 24000/1001, though on a short clip
        # both grids hold the times).
        near = [] if r in STANDARD_RATES else [s for s in STANDARD_RATES if abs(s - r) <= r / 1000]
        for c in near + [r]:
            if c not in out:
                out.append(c)
    for std in STANDARD_RATES:
        if std not in out and any(abs(std - r) <= r / 100 for r in stated):
            out.append(std)
    return out


@dataclass(frozen=True)
class Grid:
    """Frame times origin + k / rate, matched within `tol`."""

    rate: Fraction
    tol: Fraction

    def index(self, origin: Fraction, time: Fraction) -> int | None:
        """k where `time` is the grid point origin + k / rate (within the tolerance), else None."""
        k = round((time - origin) * self.rate)
        return k if abs(time - origin - Fraction(k) / self.rate) <= self.tol else None

    def snap(self, origin: Fraction, time: Fraction) -> Fraction | None:
        k = self.index(origin, time)
        return None if k is None else origin + Fraction(k) / self.rate


@dataclass(frozen=True)
class Regularity:
    """What the timestamps of a stream's first frames say about it."""

    grid: Grid | None  # every time on one grid; None: a truly variable stream
    gaps: bool  # on the grid, but some grid points have no frame (dropped or held frames)

    @property
    def constant(self) -> bool:
        return self.grid is not None and not self.gaps


def step_rate(times: Sequence[Fraction]) -> Fraction | None:
    """The rate the commonest step between consecutive times implies (containers such as AVI state
    a rate that is a multiple or a fraction of the real one)."""
    ts = sorted(set(times))
    steps = sorted(b - a for a, b in itertools.pairwise(ts))
    if not steps:
        return None
    median = steps[len(steps) // 2]
    return 1 / median if median > 0 else None


def find_grid(
    times: Sequence[Fraction], tick: Fraction | None, rates: Sequence[Fraction]
) -> Regularity:
    """The grid, from the earliest time, that holds every time (presentation times in any order;
    repeats are ignored): the first of `rates` (then of the rate the commonest step implies, or
    a standard rate within 1 % of it) that leaves no grid point empty, else the first that holds
    them with gaps; a Regularity without a grid when none holds them."""
    ts = sorted(set(times))
    if len(ts) < 2:
        rate = rates[0] if rates else None
        return Regularity(Grid(rate, tolerance(tick, rate)) if rate else None, False)
    origin = ts[0]
    stepped = step_rate(ts)
    tries = list(rates)
    for r in [stepped] + candidate_rates([stepped]) if stepped else []:
        if r not in tries:
            tries.append(r)
    with_gaps = None
    for rate in tries:
        grid = Grid(rate, tolerance(tick, rate))
        ks = [grid.index(origin, t) for t in ts]
        if any(k is None for k in ks) or len(set(ks)) != len(ks):
            continue
        if ks[-1] == len(ks) - 1:
            return Regularity(grid, False)
        with_gaps = with_gaps or Regularity(grid, True)
    return with_gaps or Regularity(None, True)
