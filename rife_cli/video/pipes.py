"""Standard input and output (`-`) and URLs: the spool that turns a pipe or a URL into a file the
rest of the tool reads as any other, and the copy of a finished output to standard output.

A pipe cannot be read twice, and the tool reads its input three times (probe, decode, the copy of
the audio), so a non-file input is spooled byte for byte into TMPDIR first: a URL by FFmpeg's own
protocols (its `data` demuxer hands the bytes over as they come), standard input by reading it.
An output to standard output is made as a file in TMPDIR and copied out when finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError, OutputError, PipeClosed, RifeError, UsageError
from .sink import muxer_options

STDIO = "-"
# --format for -o -: FFmpeg's muxer -> the extension of the file it is made as (see sink.CONTAINERS)
PIPE_FORMATS = {"matroska": ".mkv", "nut": ".nut", "mpegts": ".mpegts", "yuv4mpegpipe": ".y4m"}
CHUNK = 1 << 20
# A URL that sends nothing for this long fails instead of hanging the job (microseconds).
URL_TIMEOUT_US = 30_000_000


def is_url(text: object) -> bool:
    return str(text).lower().startswith(("http://", "https://"))


def is_stdio(text: object) -> bool:
    return str(text) == STDIO


def is_fifo(text: object) -> bool:
    """A named pipe or a shell's process substitution (`<(ffmpeg ...)`, /dev/fd/63): read once,
    as it comes, like standard input."""
    try:
        return stat.S_ISFIFO(os.stat(str(text)).st_mode)
    except (OSError, ValueError):
        return False


def is_stream(text: object) -> bool:
    """An input read as it comes (standard input, a URL, a named pipe), not a file or folder on
    this machine."""
    return is_stdio(text) or is_url(text) or is_fifo(text)


def label(text: object) -> str:
    return "standard input" if is_stdio(text) else str(text)


def _name(source: str) -> str:
    """The spool's file name: the URL's own (so a default output is named after it)."""
    if is_stdio(source):
        return "stdin"
    tail = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return "".join(c for c in tail if c.isalnum() or c in "._-") or "input"


@contextlib.contextmanager
def spooled_input(source: str | Path, folder: Path | None = None) -> Iterator[Path]:
    """The input as a local file: a file or folder as it is; standard input or a URL copied into
    a temporary folder (in `folder`, default TMPDIR), removed on leaving. Errors that name the
    spool name the input instead."""
    if not is_stream(source):
        yield Path(source)
        return
    source = str(source)
    tmp = Path(tempfile.mkdtemp(prefix="rife-in-", dir=folder))
    path = tmp / _name(source)
    try:
        if is_stdio(source):
            _read_stdin(path)
        elif is_fifo(source):
            with open(source, "rb") as pipe, open(path, "wb") as f:
                shutil.copyfileobj(pipe, f, CHUNK)
        else:
            _download(source, path)
        if path.stat().st_size == 0:
            raise InputError(f"{label(source)}: nothing came (an empty input)")
        try:
            yield path
        except RifeError as exc:
            exc.args = tuple(str(a).replace(str(path), label(source)) for a in exc.args)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_stdin(path: Path) -> None:
    with open(path, "wb") as f:
        while chunk := os.read(0, CHUNK):
            f.write(chunk)


def _download(url: str, path: Path) -> None:
    try:
        with (
            av.open(url, format="data", timeout=URL_TIMEOUT_US / 1e6) as c,
            open(path, "wb") as f,
        ):
            f.writelines(bytes(packet) for packet in c.demux())
    except (av.FFmpegError, OSError) as exc:
        reason = (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()[0][:120]
        if isinstance(exc, av.ExitError) or "Immediate exit requested" in reason:
            # PyAV's timeout stops FFmpeg by its interrupt callback, which FFmpeg calls an exit
            reason = f"nothing came for {URL_TIMEOUT_US // 1_000_000} s: timed out"
        raise InputError(f"{url}: cannot be read ({reason})") from None


@dataclass
class PipeOutput:
    """`-o -`: where the output is made, and its muxer."""

    path: Path  # in a temporary folder
    fmt: str


@contextlib.contextmanager
def piped_output(output: str | Path | None, fmt: str | None) -> Iterator[PipeOutput | None]:
    """For `-o -`, a temporary place to make the output in (removed on leaving); else None."""
    if not is_stdio(output):
        if fmt is not None:
            raise UsageError("--format is for -o - (standard output); a file's suffix says it")
        yield None
        return
    fmt = fmt or "matroska"
    if fmt not in PIPE_FORMATS:
        raise UsageError(f"--format {fmt}: use {', '.join(PIPE_FORMATS)}")
    tmp = Path(tempfile.mkdtemp(prefix="rife-out-"))
    try:
        yield PipeOutput(tmp / f"stdout{PIPE_FORMATS[fmt]}", fmt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def send_to_stdout(path: Path) -> None:
    """The finished file onto standard output; a reader that went away ends it (PipeClosed)."""
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(1, view) :]
    except BrokenPipeError:
        raise PipeClosed() from None
    except OSError as exc:  # a full disk behind a redirect (> /dev/full), a quota
        raise OutputError(
            f"standard output: write failed ({exc.strerror or exc}); the video was made, "
            "but could not be written there"
        ) from None


def join_raw(segments: list[Path], out: Path, rate: Fraction) -> None:
    """yuv4mpegpipe: the raw pictures of the segments in order, in one stream (its muxer takes
    only uncompressed frames, so they go through as decoded, unchanged)."""
    with av.open(
        str(out), "w", format="yuv4mpegpipe", container_options=muxer_options("yuv4mpegpipe")
    ) as dst:
        stream = None
        n = 0
        for seg in segments:
            with av.open(str(seg)) as src:
                for frame in src.decode(src.streams.video[0]):
                    if stream is None:
                        stream = dst.add_stream("wrapped_avframe", rate=rate)
                        stream.width, stream.height = frame.width, frame.height
                        stream.pix_fmt = frame.format.name
                    frame.pts, frame.time_base = n, 1 / rate
                    dst.mux(stream.encode(frame))
                    n += 1
        if stream is not None:
            dst.mux(stream.encode(None))
