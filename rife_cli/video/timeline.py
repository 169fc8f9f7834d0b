"""The pictures' times as the reader decodes them: snapped to the stream's grid, with the clock's
restarts made good (recordings joined with cat), forward jumps held and put back on the grid,
frames missing and timestamps out of order said (three times each, then counted)."""

from __future__ import annotations

from fractions import Fraction

from .grid import Grid

# A step back of this many frames or more is the clock starting again (recordings joined); less
# is one picture's timestamp out of order, placed after the last. The decoder gives pictures in
# presentation order, so B-frames never step back.
RESTART_FRAMES = 2
# Notices of one kind said by place; the rest are counted at the end.
SAID = 3


def jump_after(rate: Fraction) -> Fraction:
    """A gap between frames longer than this is a jump in the timestamps, not frames missing
    to interpolate: a second, or four frames at a low rate (a 1 fps time-lapse)."""
    return max(Fraction(1), 4 / rate)


class Timeline:
    """One read of a stream's pictures. `origin` is the grid's origin where the caller knows it
    (a shard entered by seeking), else the first picture's time. `restarts` holds the clock's
    cumulative moves at its restarts, in order (stats["restarts"] too, for the mux to move the
    other tracks by: video.mux._Clock)."""

    def __init__(self, info, origin: Fraction | None, stats: dict, warn=None):
        self.info, self.stats, self.warn = info, stats, warn
        self.origin = origin
        self.last: Fraction | None = None  # the last picture's time
        self.restart = Fraction(0)  # what the clock's restarts so far add to the stamps
        self.shift = Fraction(0)  # what puts the pictures since the last jump on the grid
        self.strayed = False  # a picture was off the grid (said once)
        self.bad_seen = stats["bad_packets"]
        self.counts = {"restarts": 0, "jumps": 0, "disordered": 0, "gaps": 0, "gap_frames": 0}

    def place(self, frame, tb: Fraction, index: int) -> tuple[Fraction, bool, bool]:
        """Picture `index`'s time, whether it is on the grid, and whether the stamps jump forward
        before it (the gap is held, not interpolated: scenes.JUMP)."""
        info, grid, last = self.info, self.info.grid, self.last
        time, on_grid = _place(frame, tb, grid, self.origin, last, info, self.restart + self.shift)
        if self.origin is None:
            self.origin = time
        if last is not None and last - time >= RESTART_FRAMES / info.rate:
            # The clock starts again: going on from the last picture; the other tracks are moved
            # by as much at the join (video.mux)
            self.restart += self.shift + last + 1 / info.rate - time
            self.shift = Fraction(0)
            self.stats.setdefault("restarts", []).append(self.restart)
            self._say(
                "restarts",
                f"timestamps start again at frame {index} ({float(last - info.start):.2f} s; "
                "recordings joined?): taken as going on from there",
            )
            time = last + 1 / info.rate
            on_grid = grid is not None and grid.index(self.origin, time) is not None
        jump = last is not None and time - last > jump_after(info.rate)
        skipped = self.stats["bad_packets"] - self.bad_seen  # said as corrupt packets
        self.bad_seen = self.stats["bad_packets"]
        if not jump and on_grid and last is not None and not skipped:
            self._missing(round((time - last) * grid.rate) - 1, index, time)
        if jump:
            stamped = time - last
            if grid is not None:
                # The recording after the jump on the grid (by less than half a frame from its
                # stamps), so that its pictures pass through and pairs make midpoints
                base = time - self.shift
                self.shift = nearest(grid, self.origin, base) - base
                time, stamped, on_grid = base + self.shift, base - last, True
            self._say(
                "jumps",
                f"timestamps jump {float(stamped):.2f} s forward at frame {index} "
                f"({float(last - info.start):.2f} s; a joined or damaged recording?): the gap is "
                "kept as time, held on the picture before it, not interpolated"
                + _moved_note(self.shift, grid),
            )
        if not on_grid and grid is not None and not self.strayed:
            self.strayed = True
            self._say(
                None,
                f"from frame {index} on, timestamps leave the {float(grid.rate):g} fps grid; "
                "placed by their timestamps",
            )
        if last is not None and time <= last:
            self._say(
                "disordered",
                f"frame {index} has a timestamp out of order; placed after the last",
            )
            time = last + 1 / info.rate
        return time, on_grid, jump

    def passed(self, time: Fraction) -> None:
        """The picture at `time` is read (given on, or skipped before a shard's start)."""
        self.last = time

    def finish(self) -> None:
        """What was said by place only three times, counted."""
        counts, path = self.counts, self.info.path
        if self.warn and counts["disordered"] > SAID:
            self.warn(f"{path}: {counts['disordered']} frames in all had timestamps out of order")
        if self.warn and counts["gaps"] > SAID:
            self.warn(
                f"{path}: {counts['gap_frames']} frames in all missing from the timeline, in "
                f"{counts['gaps']} gaps"
            )

    def _missing(self, missing: int, index: int, time: Fraction) -> None:
        """Dropped (or held) frames before picture `index`: the pair across them makes them."""
        if missing <= 0:
            return
        self.counts["gap_frames"] += missing
        self._say(
            "gaps",
            f"{missing} frame{'s' * (missing > 1)} missing from the "
            f"{float(self.info.grid.rate):g} fps timeline before frame {index} "
            f"({float(time - self.info.start):.2f} s): made by interpolation",
        )

    def _say(self, kind: str | None, text: str) -> None:
        """A notice of `kind` (None: said once by its caller), the first SAID of each kind."""
        if kind is not None:
            self.counts[kind] += 1
        if self.warn and (kind is None or self.counts[kind] <= SAID):
            self.warn(f"{self.info.path}: {text}")


def nearest(grid: Grid, origin: Fraction, time: Fraction) -> Fraction:
    """The grid point nearest `time`."""
    return origin + Fraction(round((time - origin) * grid.rate)) / grid.rate


def _moved_note(moved: Fraction, grid: Grid | None) -> str:
    """What the jump notice adds where the pictures after the jump were moved onto the grid."""
    if not moved:
        return ""
    ms = round(abs(float(moved)) * 1000)
    way = "earlier" if moved < 0 else "later"
    return (
        f"; the pictures after it are put on the {float(grid.rate):g} fps grid, {ms} ms {way} "
        "than stamped (the sound keeps its own time)"
    )


def _place(frame, tb, grid, origin, last_time, info, offset=Fraction(0)) -> tuple[Fraction, bool]:
    """A decoded frame's time, and whether it sits on the stream's grid: its stored time (moved by
    `offset`) snapped to the grid where it lies within the container's rounding of a grid point
    (see grid.py)."""
    if frame.pts is None:
        if last_time is None:
            return info.start, grid is not None
        return last_time + 1 / info.rate, grid is not None
    raw = Fraction(frame.pts) * tb + offset
    if grid is None:
        return raw, False
    if origin is None:
        return raw, True
    snapped = grid.snap(origin, raw)
    return (raw, False) if snapped is None else (snapped, True)
