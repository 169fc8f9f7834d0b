"""FFmpeg's filters on decoded pictures, before interpolation: interlaced sources deinterlaced to
one picture per field, and pictures of another size than the stream's fitted to it.

Both run through PyAV's filter graph (FFmpeg's own bwdif, idet, scale, pad and crop), so the
frames that come out are plain decoded frames in the source's pixel format: the rest of the
pipeline does not know they were filtered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# FFmpeg's deinterlacers we can use. bwdif (w3fdif and yadif combined) was measured against yadif
# on woven fields of progressive clips: lower combing and higher PSNR at like speed (see
# scripts/deinterlace_eval.py and docs/media.md).
DEINTERLACERS = ("bwdif", "yadif")
DEINTERLACER = "bwdif"
# Pictures idet looks at: about two seconds, enough for its multi-frame verdict to settle.
IDET_FRAMES = 50
# idet's verdicts needed before they outweigh the stream's flag (fewer: a still picture, where
# fields cannot be told apart and the flag decides).
IDET_MIN = 4
MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Interlace:
    """How an interlaced source is deinterlaced: its field order and what told us."""

    order: str  # "tff", "bff", or "auto" (each frame's own flag)
    evidence: str  # what said so

    def describe(self, frame_rate: Fraction) -> str:
        order = {"tff": "top field first", "bff": "bottom field first"}.get(
            self.order, "field order from each frame"
        )
        fields = 2 * frame_rate
        rate = f"{float(frame_rate):g}i -> {float(fields):g} fields/s"
        return f"{DEINTERLACER}, {order} ({self.evidence}), {rate}"


# FFmpeg's AVFieldOrder: 0 unknown, 1 progressive, 2-5 interlaced (tt, bb, tb, bt).
FIELD_ORDER = {2: "tff", 3: "bff", 4: "tff", 5: "bff"}
# idet's verdicts for interlacing must outnumber its progressive ones this many times before they
# are acted on without a flag: idet calls sharp synthetic progressive pictures (FFmpeg's testsrc2)
# interlaced, every one of them (docs/media.md).
IDET_MARGIN = 3
# Where idet finds interlacing the stream does not state, a second opinion before a warning: how
# much more combed the pictures are than either of their fields (combed_ratio), the median over
# COMBED_SAMPLES of the pictures idet saw. Measured (docs/media.md): progressive 0.26-0.93 (a
# real picture panning, FFmpeg's testsrc2 that idet calls interlaced, the same with noise); woven
# fields 8.4 (the real picture, 3 px a field) to 85 (the tests' clips).
COMBED_MIN = 2.0
COMBED_SAMPLES = 10


@dataclass(frozen=True)
class FieldVerdict:
    """What the first frames of a stream say: flagged interlaced (by the frames, by the stream's
    field order), and idet's multi-frame counts."""

    frames: int
    flagged: int  # frames the decoder marks interlaced
    tff: int
    bff: int
    progressive: int
    stream_order: int = 0  # the stream's field order (FIELD_ORDER; 0: not stated)
    combed: float | None = None  # combed_ratio's median where it was measured (see suspect)

    @property
    def decisive(self) -> bool:
        return self.tff + self.bff + self.progressive >= IDET_MIN

    @property
    def idet_interlaced(self) -> bool:
        return self.decisive and self.tff + self.bff >= IDET_MARGIN * max(1, self.progressive)

    @property
    def idet_progressive(self) -> bool:
        return self.decisive and self.progressive >= IDET_MARGIN * max(1, self.tff + self.bff)

    @property
    def marked(self) -> bool:
        """The frames or the stream say interlaced."""
        return self.flagged * 2 > self.frames or self.stream_order in FIELD_ORDER

    @property
    def suspect(self) -> bool:
        """Not stated interlaced, but idet finds combing and the pictures are more combed than
        their fields (which sharp synthetic pictures idet mistakes, such as testsrc2's, are not):
        interlaced pictures coded as progressive or in a stream that states nothing. Not acted
        on, but said."""
        combed = self.combed is None or self.combed >= COMBED_MIN
        return not self.marked and self.idet_interlaced and combed

    def _order(self) -> str:
        if self.decisive and self.tff + self.bff > self.progressive:
            return "tff" if self.tff >= self.bff else "bff"
        if self.flagged * 2 > self.frames:
            return "auto"  # each frame's own flag
        return FIELD_ORDER.get(self.stream_order, "tff")  # else top first, as HD broadcast

    def decide(self, mode: str) -> Interlace | None:
        """Deinterlace or not, and in which field order (idet's where it has a verdict: a
        parser's guess at the stream level is often wrong; else the frames' flags).

        auto: what the frames or the stream say, unless idet finds the pictures progressive
        (progressive content in an interlaced encode). idet alone never turns a stream into
        fields (see `suspect`): it calls FFmpeg's testsrc2 and a slideshow of unrelated pictures
        interlaced, and deinterlacing a progressive source halves its detail."""
        if mode == "off" or self.frames == 0:
            return None
        if mode == "on":
            return Interlace(self._order(), "--deinterlace on")
        if self.marked:
            if self.idet_progressive:
                return None
            by = "idet" if self._order() in ("tff", "bff") and self.decisive else "stream flag"
            return Interlace(self._order(), f"flagged interlaced; field order from {by}")
        return None


def main_video(container) -> av.video.stream.VideoStream | None:
    """The stream to interpolate: the first video stream that is not an attached picture (cover
    art, which FFmpeg lists as a one-frame video stream)."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def examine(path: Path, frames: int = IDET_FRAMES) -> FieldVerdict:
    """Decode the first `frames` pictures of the main video stream through idet, keeping the
    luma of COMBED_SAMPLES of them for a second opinion where idet's is not backed by a flag."""
    flagged = n = 0
    last = None
    lumas: list[np.ndarray] = []
    every = max(1, frames // COMBED_SAMPLES)
    with av.open(str(path), metadata_errors="replace") as c:
        s = main_video(c)
        graph = None
        try:
            for frame in c.decode(s):
                if graph is None:
                    graph = _graph(frame, s.time_base, "idet")
                n += 1
                flagged += bool(frame.interlaced_frame)
                if n % every == 0 and len(lumas) < COMBED_SAMPLES:
                    lumas.append(frame.reformat(format="gray").to_ndarray())
                graph.push(frame)
                last = _pull_all(graph)[-1:] or [last]
                last = last[0]
                if n >= frames:
                    break
        except av.FFmpegError:
            pass  # a damaged start: what was decoded decides
    meta = dict(last.metadata) if last is not None else {}

    def count(key: str) -> int:
        return int(float(meta.get(f"lavfi.idet.multiple.{key}", 0)))

    order = s.codec_context.field_order if s.codec_context is not None else 0
    verdict = FieldVerdict(
        n, flagged, count("tff"), count("bff"), count("progressive"), int(order or 0)
    )
    if not verdict.marked and verdict.idet_interlaced and lumas:
        verdict = replace(verdict, combed=float(np.median([combed_ratio(y) for y in lumas])))
    return verdict


def _graph(frame: av.VideoFrame, time_base, *chain: str) -> av.filter.Graph:
    g = av.filter.Graph()
    src = g.add_buffer(
        width=frame.width,
        height=frame.height,
        format=frame.format.name,
        time_base=time_base or Fraction(1, 90000),
    )
    node = src
    for spec in chain:
        name, _, args = spec.partition("=")
        f = g.add(name, args or None)
        node.link_to(f)
        node = f
    sink = g.add("buffersink")
    node.link_to(sink)
    g.configure()
    return g


def _pull_all(graph) -> list[av.VideoFrame]:
    out = []
    while True:
        try:
            out.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return out


class Deinterlacer:
    """Interlaced frames in, one progressive frame per field out (bwdif's send_field mode), each
    timed at its field: the second field of a frame at time T, duration d is at T + d/2. The
    frames come out in the time base of the graph (the stream's, halved)."""

    def __init__(self, interlace: Interlace, time_base: Fraction, name: str = DEINTERLACER):
        parity = {"tff": "tff", "bff": "bff"}.get(interlace.order, "auto")
        # deint=all: a source whose flag is missing has no frame marked interlaced
        self.spec = f"{name}=mode=send_field:parity={parity}:deint=all"
        self.time_base = time_base
        self.graph = None
        self.shape = None

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        shape = (frame.width, frame.height, frame.format.name)
        out = []
        if self.graph is None or shape != self.shape:
            out = self.flush()  # a new picture size or format (after fitting: only the format)
            self.graph, self.shape = _graph(frame, self.time_base, self.spec), shape
        self.graph.push(frame)
        return out + _pull_all(self.graph)

    def flush(self) -> list[av.VideoFrame]:
        if self.graph is None:
            return []
        self.graph.push(None)
        out = _pull_all(self.graph)
        self.graph = None
        return out


def fitted_size(
    width: int, height: int, sar: Fraction, to_w: int, to_h: int, to_sar: Fraction
) -> tuple[int, int]:
    """The size a width x height picture (pixels of aspect `sar`) is scaled to inside to_w x
    to_h (pixels of `to_sar`): as large as fits with its shape kept, in even numbers of pixels."""
    shown = Fraction(width) * sar / to_sar  # its width in the target's pixels, at its height
    k = min(Fraction(to_w) / shown, Fraction(to_h, height))
    w = min(to_w, max(2, round(shown * k / 2) * 2))
    h = min(to_h, max(2, round(height * k / 2) * 2))
    return w, h


class Fitter:
    """Pictures to one size. The stream's own size is cropped to `width` x `height` where they
    differ (an odd size the encoder's chroma cannot hold: one pixel off the right or bottom);
    any other size is scaled into it with its shape kept and padded with black."""

    def __init__(self, width: int, height: int, sar: Fraction | None, stream_size: tuple[int, int]):
        self.width, self.height = width, height
        self.sar = sar or Fraction(1)
        self.stream_size = stream_size
        self.graphs: dict[tuple, av.filter.Graph] = {}

    def needed(self, frame: av.VideoFrame) -> bool:
        return (frame.width, frame.height) != (self.width, self.height)

    def foreign(self, frame: av.VideoFrame) -> bool:
        """Of another size than the stream's (not just cropped)."""
        return (frame.width, frame.height) != self.stream_size

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if not self.needed(frame):
            return frame
        # PyAV shows no per-frame aspect: the new pictures' pixels are taken as the stream's
        key = (frame.width, frame.height, frame.format.name)
        graph = self.graphs.get(key)
        if graph is None:
            if not self.foreign(frame):
                chain = (f"crop={self.width}:{self.height}:0:0",)
            else:
                w, h = fitted_size(
                    frame.width, frame.height, self.sar, self.width, self.height, self.sar
                )
                x, y = (self.width - w) // 2 // 2 * 2, (self.height - h) // 2 // 2 * 2
                chain = (
                    f"scale={w}:{h}:flags=bicubic+accurate_rnd+full_chroma_int",
                    f"pad={self.width}:{self.height}:{x}:{y}:black",
                )
            graph = self.graphs[key] = _graph(frame, frame.time_base, *chain)
        graph.push(frame)
        (out,) = _pull_all(graph)
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


def apply(
    frames: Iterator[av.VideoFrame],
    fitter: Fitter | None,
    deinterlacer: Deinterlacer | None,
) -> Iterator[tuple[av.VideoFrame, tuple[int, int], bool]]:
    """Each decoded frame fitted to one size and, for an interlaced source, each of its fields;
    with the size the frame was decoded at, and whether that differs from the frame before's (a
    size change: nothing may be blended across it)."""
    last_size = None
    given: deque[tuple[tuple[int, int], bool]] = deque()  # per frame given the deinterlacer
    fields = 0  # fields out of the deinterlacer: two per frame, in order

    def field_of(field):
        nonlocal fields
        size, change = given[0]
        if fields % 2:
            given.popleft()
        fields += 1
        return field, size, change and fields % 2 == 1

    for frame in frames:
        size = (frame.width, frame.height)
        change = last_size is not None and size != last_size
        last_size = size
        if fitter is not None:
            frame = fitter(frame)
        if deinterlacer is None:
            yield frame, size, change
            continue
        given.append((size, change))
        for field in deinterlacer.push(frame):
            yield field_of(field)
    if deinterlacer is not None:
        for field in deinterlacer.flush():
            if given:
                yield field_of(field)


def combed_ratio(luma: np.ndarray) -> float:
    """How much more combed a picture is than its two fields, each a picture of its own: woven
    fields of a moving scene far more (their rows alternate between two moments), a progressive
    picture less (its rows are closer together than a field's). Too few rows to tell (idet
    calls a 7x5 progressive picture interlaced): 0, which warns of nothing."""
    if luma.shape[0] < 6:
        return 0.0
    fields = (combing(luma[0::2]) + combing(luma[1::2])) / 2
    return combing(luma) / max(fields, 1e-6)


def combing(luma: np.ndarray) -> float:
    """How combed a picture is: the mean, over pixels, of how far each row stands out against
    both rows beside it in the same direction (the saw-tooth of woven fields), in code values.
    Smooth vertical gradients and single edges score nothing; only alternation does."""
    y = luma.astype(np.float64)
    up, mid, down = y[:-2], y[1:-1], y[2:]
    a, b = mid - up, mid - down
    zig = np.where(a * b > 0, np.minimum(np.abs(a), np.abs(b)), 0.0)
    return float(zig.mean())
