"""Resumable output: the video is written in segments, each a complete file, with a journal.

A segment covers a run of source frames and every output frame timed inside it. The journal
(JSON, replaced atomically) records the input's identity, the options, and the finished segments,
so a run killed in any way continues after the last finished segment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import OutputError, UsageError

JOURNAL = "journal.json"
VERSION = 1
# A segment is closed at the next source frame once it holds SEGMENT_FRAMES output frames (x264's
# own keyframe interval), or once it has been open SEGMENT_SECONDS and holds at least
# SEGMENT_MIN_FRAMES: a kill loses a few seconds of work at most, and a segment (which starts with a
# keyframe) never gets shorter than about a second of video.
# RIFE_SEGMENT_FRAMES / RIFE_SEGMENT_SECONDS override them (tests use tiny segments).
SEGMENT_FRAMES = int(os.environ.get("RIFE_SEGMENT_FRAMES", "250"))
SEGMENT_SECONDS = float(os.environ.get("RIFE_SEGMENT_SECONDS", "3"))
SEGMENT_MIN_FRAMES = min(24, SEGMENT_FRAMES)


_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Test hook: RIFE_TEST_KILL_AT=`name` (or `name:N`, the N-th time here) makes the process
    SIGKILL itself at this point, so the tests can kill a run at each stage (the journal, the
    final join) and resume it."""
    want = os.environ.get("RIFE_TEST_KILL_AT")
    if not want or want.partition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(want.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def work_dir_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.rife-resume")


def input_identity(path: Path) -> dict:
    """Size, mtime and a hash of the first MiB: cheap, and changes when the file is replaced."""
    st = path.stat()
    ident = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_file():
        with open(path, "rb") as f:
            ident["head_sha256"] = hashlib.sha256(f.read(1 << 20)).hexdigest()
    return ident


def write_json(path: Path, data) -> None:
    """`data` as JSON at `path`, whole or not at all (written beside it, synced, renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(data, indent=1)
    with open(tmp, "w") as f:
        f.write(text[: len(text) // 2])
        crash_point("journal")  # half written: the journal in place must still be the last one
        f.write(text[len(text) // 2 :])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fresh_dir(folder: Path) -> None:
    """An empty `folder`, whatever was there."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


@dataclass
class Segment:
    file: str
    first_src: int  # first source frame it covers
    end_src: int  # source frame the next segment starts at
    first_out: int
    n_out: int
    cuts: int  # scene cuts found inside it


@dataclass
class Journal:
    folder: Path
    input: dict
    options: dict
    segments: list[Segment] = field(default_factory=list)

    @property
    def next_src(self) -> int:
        return self.segments[-1].end_src if self.segments else 0

    @property
    def frames_out(self) -> int:
        return sum(s.n_out for s in self.segments)

    def save(self) -> None:
        data = {
            "version": VERSION,
            "input": self.input,
            "options": self.options,
            "segments": [asdict(s) for s in self.segments],
        }
        try:
            write_json(self.folder / JOURNAL, data)
        except OSError as exc:
            # the journal in place is the last whole one: finished segments stay resumable
            raise OutputError(
                f"{self.folder / JOURNAL}: cannot write the resume journal "
                f"({exc.strerror or exc}); free space and rerun with --resume"
            ) from None

    @classmethod
    def load(cls, folder: Path) -> Journal | None:
        try:
            data = json.loads((folder / JOURNAL).read_text())
            if data.get("version") != VERSION:
                return None
            segs = [Segment(**s) for s in data["segments"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Only segments whose file is there count; anything after a missing one is redone.
        kept = []
        for s in segs:
            if not (folder / s.file).is_file():
                break
            kept.append(s)
        return cls(folder, data["input"], data["options"], kept)


def open_journal(
    out: Path, inp: Path, options: dict, resume: bool, force: bool, folder: Path | None = None
) -> Journal:
    """The journal to continue (with --resume) or a fresh one; a mismatch is refused. `folder`:
    where it lives (default: the output's resume folder; a shard's own inside it)."""
    folder = folder or work_dir_for(out)
    ident = input_identity(inp)
    if resume and folder.is_dir():
        old = Journal.load(folder)
        if old is not None and old.input == ident and old.options == options:
            for p in folder.iterdir():  # a segment being written when the run died
                if p.name.endswith(".part") or p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
            return old
        if old is not None and not force:
            what = "input file" if old.input != ident else "options"
            raise UsageError(
                f"{out}: the unfinished run there was made with other {what}; "
                "rerun with the same ones, or add --force to start over"
            )
    fresh_dir(folder)
    j = Journal(folder, ident, options)
    j.save()
    return j


class SegmentedSink:
    """Writer-side: opens a sink per segment, closes it at a cut, and records it in the journal."""

    def __init__(self, journal: Journal, make_sink: Callable[[Path], object], ext: str):
        self.journal = journal
        self.make_sink = make_sink
        self.ext = ext
        self.sink = None
        self.part: Path | None = None
        self.first_src = journal.next_src
        self.first_out = 0
        self.count = 0

    def write(self, index: int, image, original) -> None:
        if self.sink is None:
            n = len(self.journal.segments)
            self.part = self.journal.folder / f"seg_{n:05d}{self.ext}.part"
            self.sink = self.make_sink(self.part)
            self.first_out, self.count = index, 0
        self.sink.write(index, image, original)
        self.count += 1

    def cut(self, next_src: int, cuts: int) -> None:
        """Close the open segment; the next one starts at source frame `next_src`."""
        if self.sink is None:
            return
        self.sink.close()
        final = self.part.with_name(self.part.name.removesuffix(".part"))
        os.replace(self.part, final)
        self.journal.segments.append(
            Segment(final.name, self.first_src, next_src, self.first_out, self.count, cuts)
        )
        self.journal.save()
        self.sink, self.part = None, None
        self.first_src = next_src

    def close(self) -> None:
        """Every segment is closed by its cut; one still open here was never cut (a bug)."""
        if self.sink is not None:
            raise RuntimeError("segment left open")

    def abort(self) -> None:
        """Drop the open segment only; finished ones stay for --resume."""
        if self.sink is not None:
            self.sink.abort()
        if self.part is not None:
            self.part.unlink(missing_ok=True)
        self.sink, self.part = None, None

    def files(self) -> list[Path]:
        return [self.journal.folder / s.file for s in self.journal.segments]


class SegmentClock:
    """Inference-side: says when the open segment is full."""

    def __init__(self, frames: int = SEGMENT_FRAMES, seconds: float = SEGMENT_SECONDS):
        self.frames, self.seconds = frames, seconds
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.started = time.monotonic()

    def full(self) -> bool:
        if self.count >= self.frames:
            return True
        enough = self.count >= min(SEGMENT_MIN_FRAMES, self.frames)
        return enough and time.monotonic() - self.started >= self.seconds
