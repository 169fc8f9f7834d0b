"""Which source pair and which t each output frame comes from, in exact rational arithmetic.

Output frame i sits at start + i / rate. A source pair (a, b) owns the output frames with
a <= T < b; its t is (T - a) / (b - a), and t = 0 means "the source frame itself".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..errors import UsageError


def parse_rate(text: str) -> Fraction:
    """`60`, `59.94` (taken as 60000/1001), `60000/1001` or `29.97` -> an exact frame rate."""
    text = text.strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            rate = Fraction(int(num), int(den))
        else:
            rate = Fraction(text)
            # The NTSC family written as decimals means the 1001 rates.
            for base in (24, 30, 48, 60, 120, 240):
                if rate != base and abs(float(rate) - base * 1000 / 1001) < 0.005:
                    rate = Fraction(base * 1000, 1001)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a frame rate (60, 59.94 or 60000/1001)") from None
    if rate <= 0:
        raise ValueError(f"{text!r} is not a positive frame rate")
    return rate


@dataclass(frozen=True)
class Target:
    """The output's rate relative to the source, and the rate it is written at."""

    rate: Fraction  # output frames per second of source time
    write_rate: Fraction  # rate written into the file (differs from `rate` only for slow motion)
    factor: Fraction  # rate / source rate

    def label(self) -> str:
        f = self.factor
        factor = str(f.numerator) if f.denominator == 1 else f"{float(f):.3g}"
        r = self.write_rate
        fps = str(r.numerator) if r.denominator == 1 else f"{float(r):.2f}"
        return f"{factor}x_{fps}fps"


MAX_EXP = 8


def one_of(**options) -> None:
    """At most one of the named options may be given (names with _ for -)."""
    given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other; give one")


def check_exp(exp: int) -> None:
    if not 1 <= exp <= MAX_EXP:
        raise UsageError(f"--exp {exp}: must be between 1 and {MAX_EXP}")


def check_multi(multi: int) -> None:
    if multi < 2:
        raise UsageError(f"--multi {multi}: must be 2 or more")


@dataclass(frozen=True)
class Timing:
    """The timing asked for, checked before any source is opened: a factor or a target rate."""

    factor: Fraction | None  # from --exp / --multi
    fps: Fraction | None  # from --fps
    slowmo: bool

    @classmethod
    def from_options(
        cls, exp: int | None, multi: int | None, fps: str | Fraction | None, slowmo: bool
    ) -> Timing:
        """Exactly one of exp / multi / fps (default exp 1); UsageError for bad combinations."""
        one_of(exp=exp, multi=multi, fps=fps)
        if fps is not None:
            if slowmo:
                raise UsageError("--slowmo needs --exp or --multi, not --fps")
            if isinstance(fps, str):
                try:
                    fps = parse_rate(fps)
                except ValueError as exc:
                    raise UsageError(f"--fps {exc}") from None
            return cls(None, fps, False)
        if multi is not None:
            check_multi(multi)
            return cls(Fraction(multi), None, slowmo)
        exp = 1 if exp is None else exp
        check_exp(exp)
        return cls(Fraction(1 << exp), None, slowmo)

    def target(self, source_rate: Fraction) -> Target:
        if self.fps is not None:
            if self.fps < source_rate:
                raise UsageError(
                    f"--fps {float(self.fps):g} is below the source rate {float(source_rate):g}; "
                    "rife only adds frames"
                )
            return Target(self.fps, self.fps, self.fps / source_rate)
        rate = source_rate * self.factor
        return Target(rate, source_rate if self.slowmo else rate, self.factor)


@dataclass(frozen=True)
class Slot:
    index: int  # output frame number
    t: Fraction  # 0: the earlier source frame as is


class Plan:
    """Output slots per source pair, computed as the source is read (its length is not known)."""

    def __init__(self, rate: Fraction, start: Fraction):
        self.rate = rate
        self.start = start

    def _first_index_at_or_after(self, time: Fraction) -> int:
        return max(0, math.ceil((time - self.start) * self.rate))

    def time_of(self, index: int) -> Fraction:
        return self.start + Fraction(index) / self.rate

    def slots(self, a: Fraction, b: Fraction) -> list[Slot]:
        """Output frames between source times a (included) and b (excluded)."""
        if b <= a:
            return []
        out = []
        i = self._first_index_at_or_after(a)
        while (time := self.time_of(i)) < b:
            out.append(Slot(i, (time - a) / (b - a)))
            i += 1
        return out

    def tail(self, a: Fraction, end: Fraction | None) -> list[Slot]:
        """The last source frame at time a: held until `end`, or only itself when end is None."""
        if end is None:
            i = self._first_index_at_or_after(a)
            return [Slot(i, Fraction(0))] if self.time_of(i) == a else []
        return [Slot(s.index, Fraction(0)) for s in self.slots(a, end)]
