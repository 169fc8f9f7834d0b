"""Cutting one input into shards: contiguous runs of source frames that separate processes (or
machines) interpolate on their own and that join into the same output as one run.

A shard owns the source frames whose times lie in [first, end) and makes every pair that starts
in it, so the pair across a boundary (its last frame and the next shard's first) is made exactly
once, by the earlier shard. Each shard writes its segments and journal into a folder of its own
inside the output's resume folder; the last one also holds the last source frame for its interval.
The plan is recorded there, so that --resume cuts the input the same way whatever runs it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import UsageError
from ..pipeline.resume import Journal, fresh_dir, work_dir_for, write_json

PLAN = "shards.json"
# A shard shorter than this is not worth a process: fewer shards are made.
MIN_SHARD_FRAMES = 8


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    first: Fraction | None  # source time of its first frame; None: from the start
    end: Fraction | None  # source time of the next shard's first frame; None: to the end

    @property
    def last(self) -> bool:
        return self.index == self.count - 1

    def folder(self, out: Path) -> Path:
        return work_dir_for(out) / f"shard_{self.index:03d}"

    def done_marker(self, out: Path) -> Path:
        return self.folder(out) / "done"

    def label(self) -> str:
        return f"shard {self.index + 1}/{self.count}"


def cut(start: Fraction, rate: Fraction, frames: int | None, duration: Fraction | None, n: int):
    """n shards of about equal length, their boundaries on frame times of the grid from `start`
    at `rate` (for a variable-rate source those are only times to split at). Fewer when the input
    is short."""
    if frames is None:
        frames = int((duration or 0) * rate)
    n = max(1, min(n, frames // MIN_SHARD_FRAMES if frames else 1))
    bounds = [start + Fraction(round(k * frames / n)) / rate for k in range(1, n)]
    edges = [None, *bounds, None]
    return [Shard(k, n, edges[k], edges[k + 1]) for k in range(n)]


def _encode(shards: list[Shard]) -> list[list[str | None]]:
    return [[None if s.first is None else str(s.first), None if s.end is None else str(s.end)]
            for s in shards]  # fmt: skip


def load_or_save_plan(
    out: Path, shards: list[Shard], fingerprint: dict, resume: bool, force: bool = False
):
    """The recorded plan when resuming the same job, else `shards`, recorded (the folder is made
    afresh). A plan made for another input or options is refused unless `force`. Returns
    (shards, resumed)."""
    folder = work_dir_for(out)
    path = folder / PLAN
    if resume and path.is_file():
        try:
            data = json.loads(path.read_text())
            edges = data["shards"]
            same = data.get("fingerprint") == fingerprint
        except (OSError, ValueError, KeyError, TypeError):
            same, edges = False, None
        if same:
            n = len(edges)
            return [
                Shard(k, n, *(None if v is None else Fraction(v) for v in edges[k]))
                for k in range(n)
            ], True
        if edges is not None and not force:
            raise UsageError(
                f"{out}: the unfinished run there was made with another input or other options; "
                "rerun with the same ones, or add --force to start over"
            )
    fresh_dir(folder)
    write_json(path, {"fingerprint": fingerprint, "shards": _encode(shards)})
    return shards, False


def _journals(out: Path, shards: list[Shard]) -> list[Journal]:
    return [j for s in shards if (j := Journal.load(s.folder(out))) is not None]


def segment_files(out: Path, shards: list[Shard]) -> list[Path]:
    """Every shard's finished segments, in order: the whole video."""
    return [j.folder / seg.file for j in _journals(out, shards) for seg in j.segments]


def frames_out(out: Path, shards: list[Shard]) -> int:
    """Output frames in every shard's finished segments (as their journals recorded them)."""
    return sum(j.frames_out for j in _journals(out, shards))


def describe(shards: list[Shard]) -> list[dict]:
    return [asdict(s) | {"first": str(s.first), "end": str(s.end)} for s in shards]
