"""Video in, video out: reader thread -> bounded queue -> inference -> bounded queue -> writer thread.

Knows frames, timestamps and the plan of which (pair, t) to make; reports progress by callback.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time as clock
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import scenes
from .errors import InputError, ModelError, OutputError, UsageError
from .resume import (
    SEGMENT_FRAMES,
    SEGMENT_SECONDS,
    SegmentClock,
    SegmentedSink,
    open_journal,
)
from .timing import Plan, Slot, Timing
from .video.images import as_bgr, blend_alpha, merge
from .video.source import SourceFrame, SourceInfo, probe, read_frames
from .workers import DONE, ByteQueue, Cancelled, Worker

QUEUE_BYTES = 512 << 20  # per queue; ~20 4K frames in 8-bit
TMP_TAG = ".rife-part"
FRAME_NAME = re.compile(r"\d{8}\.png")  # what ImageSink writes


@dataclass
class Summary:
    input: str
    output: str
    frames_in: int = 0
    frames_out: int = 0
    fps_in: str = ""
    fps_out: str = ""
    duration: float = 0.0
    scene_cuts: int = 0
    seconds: float = 0.0
    device: str = ""
    model: str = ""
    precision: str = ""
    audio: list[str] = field(default_factory=list)
    bad_packets: int = 0  # corrupt packets skipped while decoding
    skipped: bool = False  # --skip-existing found the output already there
    fp32_fallbacks: int = 0  # pairs redone in fp32 because half precision overflowed
    oom_backoffs: int = 0  # batches halved after running out of device memory
    hwaccel: str | None = None  # the device that decoded the video (--hwaccel); None: software

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Options:
    exp: int | None = None
    multi: int | None = None
    fps: str | Fraction | None = None
    slowmo: bool = False
    scene_threshold: float = scenes.DEFAULT_THRESHOLD
    montage: bool = False
    png: bool = False
    force: bool = False
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    resume: bool = False
    skip_existing: bool = False
    hwaccel: str | None = None  # decode the video on this device ("cuda": NVDEC)
    queue_bytes: int = QUEUE_BYTES
    segment_frames: int = SEGMENT_FRAMES
    segment_seconds: float = SEGMENT_SECONDS


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def default_output(info: SourceInfo, label: str, png: bool) -> Path:
    stem = info.path.name if info.is_images else info.path.stem
    if png or info.is_images:
        return info.path.parent / f"{stem}_{label}"
    from .video.sink import container_of

    ext = info.path.suffix.lower() if container_of(info.path) else ".mp4"
    return info.path.with_name(f"{stem}_{label}{ext}")


def part_path(out: Path) -> Path:
    """Where the output is assembled: beside the target, so the final rename is atomic."""
    return out.with_name(f".{out.name}{TMP_TAG}{out.suffix}")


def clean_leftovers(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}{TMP_TAG}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def check_output(out: Path, force: bool, inp: Path) -> None:
    parent = out.parent
    if out.resolve() == inp.resolve():
        raise UsageError(f"-o {out}: is the input; rife never writes over its input")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{out}: parent {parent} is not a directory")
    if not parent.exists():
        raise OutputError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{out}: directory {parent} is not writable")
    if out.exists() and not force:
        raise OutputError(f"{out}: exists; use --force to overwrite")
    if out.is_dir() and any(not FRAME_NAME.fullmatch(p.name) for p in out.iterdir()):
        # --force replaces a folder of our own frames, never a folder holding anything else.
        raise OutputError(f"{out}: a directory holding other files; give a new or empty one")
    if inp.is_dir() and out.resolve().is_relative_to(inp.resolve()):
        raise UsageError(f"-o {out}: is inside the input folder; choose a place outside it")


@dataclass
class SegmentCut:
    """Marker from inference to the writer: close the segment; the next starts at `next_src`."""

    next_src: int
    cuts: int


class StopRequest:
    """Set by a signal handler: finish the current pair, close the segment, then stop."""

    def __init__(self):
        self.event = threading.Event()
        self.exit_code = 130

    def request(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


class _Run:
    """One input through the pipeline. Holds the threads, the temporaries and the counters."""

    def __init__(
        self,
        info,
        target,
        engine,
        opts,
        png,
        progress,
        warn,
        stop=None,
        journal=None,
        hwaccel=None,
    ):
        """With a journal, the run goes on after its finished segments and closes new ones. With
        hwaccel, the video is decoded on that device (see check_hwaccel)."""
        self.info, self.target, self.engine, self.opts = info, target, engine, opts
        self.png, self.progress, self.warn = png, progress, warn
        self.cancel = threading.Event()
        done = journal.segments if journal is not None else []
        self.skip_until = journal.next_src if journal is not None else 0
        self.frames_in = 0
        self.frames_out = sum(seg.n_out for seg in done)
        self.cuts = sum(seg.cuts for seg in done)
        self.segment_cuts = 0
        self.stop = stop
        self.clock = None
        if journal is not None:
            self.clock = SegmentClock(opts.segment_frames, opts.segment_seconds)
        self.stopped = False
        self.stats: dict = {"bad_packets": 0}
        self.hwaccel: str | None = hwaccel
        self.pool: ThreadPoolExecutor | None = None  # batch workers, when the engine takes two
        self.pending: deque[tuple[list, Future]] = deque()  # batches in their hands, oldest first

    # ----- reader
    def read(self, q: ByteQueue) -> None:
        try:
            # YUV planes for the device to convert where it wants them and nothing needs the
            # BGR picture on the host (PNG output, --montage).
            planes = (
                getattr(self.engine, "device_colour", False)
                and not self.png
                and not self.opts.montage
            )
            for frame in read_frames(self.info, self.warn, self.stats, self.hwaccel, planes):
                if frame.index < self.skip_until:
                    q.put(_Skipped(frame.index, frame.time), 0)
                    continue
                if self.opts.scene_threshold > 0 and frame.thumb is None:
                    frame.thumb = scenes.thumbnail(frame.image)
                q.put(frame, frame.nbytes * (2 if frame.original is not None else 1))
        finally:
            q.put(DONE)

    # ----- writer
    def write(self, q: ByteQueue, sink) -> None:
        while (item := q.get()) is not DONE:
            if isinstance(item, SegmentCut):
                if hasattr(sink, "cut"):
                    sink.cut(item.next_src, item.cuts)
                continue
            index, image, original = item
            if self.png:
                sink.write(index, image, None)
            else:
                sink.write(index, None if image is None else as_bgr(image), original)

    # ----- inference
    def infer(self, src_q: ByteQueue, out_q: ByteQueue, end_hold: bool) -> None:
        plan = None
        prev: SourceFrame | None = None
        batch_for = getattr(self.engine, "batch_for", None)
        pairs = (
            batch_for(self.info.width, self.info.height) if batch_for else self.engine.batch_size
        )
        batch: list[tuple[SourceFrame, SourceFrame, list[Slot], bool]] = []
        while (frame := src_q.get()) is not DONE:
            self.frames_in += 1
            if plan is None:
                plan = Plan(self.target.rate, frame.time)
            if isinstance(frame, _Skipped):
                continue  # inside a segment finished by an earlier run
            if prev is not None:
                if (
                    self.stop is not None
                    and self.stop.is_set()
                    or self.clock is not None
                    and self.clock.full()
                ):
                    self.flush(batch, out_q)
                    self.drain(out_q)
                    batch = []
                    out_q.put(SegmentCut(prev.index, self.segment_cuts))
                    self.segment_cuts = 0
                    if self.clock is not None:
                        self.clock.reset()
                    if self.stop is not None and self.stop.is_set():
                        self.stopped = True
                        return
                cut = self.opts.scene_threshold > 0 and scenes.is_cut(
                    prev.thumb, frame.thumb, self.opts.scene_threshold
                )
                self.cuts += cut
                self.segment_cuts += cut
                batch.append((prev, frame, plan.slots(prev.time, frame.time), cut))
                if sum(1 for p in batch if not p[3]) >= pairs:
                    self.flush(batch, out_q)
                    batch = []
                    if batch_for:  # smaller after an out-of-memory back-off
                        pairs = batch_for(self.info.width, self.info.height)
            prev = frame
        if prev is None:
            if self.skip_until:
                raise InputError(f"{self.info.path}: has fewer frames than the journal recorded")
            raise InputError(f"{self.info.path}: no frames could be decoded")
        self.flush(batch, out_q)
        self.drain(out_q)
        end = None
        if end_hold:
            dur = prev.duration or 1 / self.info.rate
            end = prev.time + dur
        for slot in plan.tail(prev.time, end):
            self.emit(out_q, slot.index, prev.image, prev.original)
        out_q.put(SegmentCut(prev.index + 1, self.segment_cuts))

    def emit(self, q: ByteQueue, index: int, image: np.ndarray | None, original) -> None:
        """Output frame `index`: a made BGR image, or a source frame (its decoded picture, and
        its BGR image where there is one)."""
        size = image.nbytes if image is not None else sum(p.buffer_size for p in original.planes)
        q.put((index, image, original), size)
        self.frames_out += 1
        if self.clock is not None:
            self.clock.count += 1
        if self.progress:
            self.progress(self.frames_out)

    def flush(self, batch, q: ByteQueue) -> None:
        """Make a batch's frames and emit them in order. Where the engine takes two batches at
        once, this one is handed to a worker and the one before it emitted when done, so that the
        engine starts on this batch while the previous one's frames are finished and queued."""
        depth = getattr(self.engine, "concurrent_batches", 1)
        if depth < 2:
            self.emit_batch(batch, self.make(batch), q)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(depth, thread_name_prefix="rife-batch")
        self.pending.append((batch, self.pool.submit(self.make, batch)))
        while len(self.pending) >= depth:
            self.emit_oldest(q)

    def drain(self, q: ByteQueue) -> None:
        """Emit every batch still in the workers' hands (before a segment closes, and at the end)."""
        while self.pending:
            self.emit_oldest(q)

    def emit_oldest(self, q: ByteQueue) -> None:
        batch, made = self.pending.popleft()
        self.emit_batch(batch, made.result(), q)

    def close(self) -> None:
        """Wait for the batch workers, if any, and stop them."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def make(self, batch) -> dict[tuple[int, Fraction], np.ndarray]:
        """The made frames of a batch, by (pair in batch, t): uploaded, made and downloaded in the
        calling thread (on CUDA on its own stream)."""
        from .engine import Request

        need = [
            i for i, (_, _, slots, cut) in enumerate(batch) if not cut and any(s.t for s in slots)
        ]
        made: dict[tuple[int, Fraction], np.ndarray] = {}
        if not need:
            return made
        stream = getattr(self.engine, "stream", contextlib.nullcontext)
        first = batch[0][0]
        dtype = first.image.dtype if first.image is not None else np.uint8
        with stream():
            a, b = self.engine.to_pair_tensors(
                [batch[i][0].picture for i in need], [batch[i][1].picture for i in need]
            )
            reqs = [Request(j, s.t) for j, i in enumerate(need) for s in batch[i][2] if s.t]
            outs = self.engine.make(a, b, reqs)
            arrays = self.engine.to_arrays(outs, self.info.height, self.info.width, dtype)
        for r, arr in zip(reqs, arrays):
            made[(need[r.pair], r.t)] = arr
        return made

    def emit_batch(self, batch, made: dict[tuple[int, Fraction], np.ndarray], q: ByteQueue):
        for i, (p, n, slots, cut) in enumerate(batch):
            for s in slots:
                if s.t == 0 or (cut and s.t <= Fraction(1, 2)):
                    self.emit(q, s.index, p.image, p.original)
                elif cut:
                    self.emit(q, s.index, n.image, n.original)
                else:
                    self.emit(q, s.index, self.finish(made[(i, s.t)], p, n, s.t), None)

    def finish(self, color: np.ndarray, p: SourceFrame, n: SourceFrame, t: Fraction) -> np.ndarray:
        """Back to the source's layout (gray, alpha) and, for --montage, the original on the left."""
        img = p.image
        if img is None:  # YUV planes: colour only, no montage
            return color
        if img.ndim == 2 or img.shape[2] == 4:
            alpha = blend_alpha(img[:, :, 3], n.image[:, :, 3], float(t)) if img.ndim == 3 else None
            color = merge(color, alpha, img.ndim == 2)
        if self.opts.montage:
            half = color.shape[1] // 2
            color = color.copy()
            color[:, :half] = img[:, :half]
        return color


@dataclass
class _Skipped:
    """A source frame already covered by a finished segment: only its place in time matters."""

    index: int
    time: Fraction


def interpolate_video(
    input: str | Path,
    output: str | Path | None = None,
    *,
    output_dir: str | Path | None = None,
    engine_factory: Callable[[bool], object] | None = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
    **options,
) -> Summary:
    """Interpolate one video or image directory. Options are those of `Options` plus, when no
    engine_factory is given, those of `Interpolator` (model, device, precision, scale, batch_size)."""
    started = clock.perf_counter()
    warn = warn or (lambda msg: None)
    engine_keys = {
        "model",
        "device",
        "precision",
        "scale",
        "batch_size",
        "offline",
        "notice",
        "compile",
        "cuda_graphs",
    }
    engine_opts = {k: options.pop(k) for k in list(options) if k in engine_keys}
    opts = Options(**options)
    inp = Path(input)
    info = probe(inp)
    hwaccel = None
    if opts.hwaccel and not info.is_images:
        from .video.source import check_hwaccel

        if check_hwaccel(info, opts.hwaccel):
            hwaccel = opts.hwaccel
        else:
            warn(f"{inp}: no {opts.hwaccel} decoder for its codec; decoding on the CPU")
    target = Timing.from_options(opts.exp, opts.multi, opts.fps, opts.slowmo).target(info.rate)
    from .video.sink import container_of

    png = (
        opts.png
        or (output is not None and str(output).endswith(os.sep))
        or (info.is_images and (output is None or container_of(Path(output)) is None))
    )
    if opts.resume and png:
        raise UsageError(
            "--resume works for video outputs; PNG sequences are rewritten from the start"
        )
    if output is not None:
        out = Path(output)
    else:
        out = default_output(info, target.label(), png)
        if output_dir is not None:
            out = Path(output_dir) / out.name
    if opts.skip_existing and out.exists():
        return Summary(input=str(inp), output=str(out), skipped=True)
    if not png:
        from .video.sink import EncodeOptions, prepare_encoding

        enc = prepare_encoding(
            out,
            EncodeOptions(opts.codec, opts.crf, opts.preset, opts.pix_fmt),
            info.width,
            info.height,
            target.write_rate,
            info.bits,
        )
    check_output(out, opts.force, inp)
    clean_leftovers(out)

    f = target.factor
    need_any = f.denominator != 1 or (f.numerator & (f.numerator - 1)) != 0 or info.vfr
    if engine_factory is None:
        from .engine import interpolator_for

        def engine_factory(need):
            return interpolator_for(need, **engine_opts)

    engine = engine_factory(need_any)
    if need_any and not engine.any_timestep:
        why = "a variable-frame-rate source" if info.vfr else f"a {float(f):g}x factor"
        raise ModelError(
            f"model {engine.source.label} makes only midpoints and cannot serve {why}; "
            "use --model v4.0"
        )
    fallbacks_before = getattr(engine, "fp32_fallbacks", 0)
    backoffs_before = getattr(engine, "oom_backoffs", 0)
    if info.frames and total:
        total(int(info.frames * f) if not png else int((info.frames - 1) * f) + 1)

    part = part_path(out)
    if png:
        from .video.sink import ImageSink

        sink, journal = ImageSink(part, info.bits), None
    else:
        sink, journal = _open_segments(inp, out, info, target, engine, opts, enc, warn)
    run = _Run(
        info, target, engine, opts, png, progress, warn, stop=stop, journal=journal, hwaccel=hwaccel
    )
    src_q = ByteQueue(opts.queue_bytes, run.cancel)
    out_q = ByteQueue(opts.queue_bytes, run.cancel)
    reader = Worker("reader", lambda: run.read(src_q), run.cancel)
    writer = Worker("writer", lambda: run.write(out_q, sink), run.cancel)
    audio: list[str] = []
    ok = False
    try:
        reader.start()
        writer.start()
        try:
            run.infer(src_q, out_q, end_hold=not png)
            out_q.put(DONE)
            if run.stopped:
                run.cancel.set()  # the reader may be blocked on a full queue
        except Cancelled:
            pass  # a worker failed and cancelled the run; its own error is raised below
        except BaseException:  # any failure here (Ctrl-C too): stop the workers, then re-raise
            run.cancel.set()
            raise
        finally:
            run.close()
            _join(reader, writer)
        writer.check()
        if run.stopped:
            from .errors import Interrupted

            raise Interrupted(
                stop.exit_code, f"interrupted; the same command with --resume continues {out.name}"
            )
        reader.check()
        if run.cancel.is_set():
            raise OutputError(f"{out}: run cancelled")
        sink.close()
        if png:
            if out.exists() and opts.force:
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(part, out)
        else:
            from .video.mux import mux

            keep = not opts.slowmo and (info.has_audio or info.has_subtitles)
            if opts.slowmo and info.has_audio:
                warn("--slowmo: audio dropped (its duration would not match)")
            report = mux(sink.files(), inp if keep else None, part, container_of(out), warn)
            audio = report.audio
            os.replace(part, out)
            shutil.rmtree(journal.folder, ignore_errors=True)
        ok = True
    except (InputError, ModelError, UsageError):
        # The input itself is at fault: nothing worth resuming.
        if journal is not None:
            shutil.rmtree(journal.folder, ignore_errors=True)
        raise
    finally:
        if hasattr(engine, "close"):
            engine.close()  # its CPU lanes' threads; they start again if the engine is used again
        if not ok:
            sink.abort()
        if part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)

    duration = Fraction(run.frames_out) / target.write_rate
    return Summary(
        input=str(inp),
        output=str(out),
        frames_in=run.frames_in,
        frames_out=run.frames_out,
        fps_in=_rate_text(info.rate),
        fps_out=_rate_text(target.write_rate),
        duration=float(duration),
        scene_cuts=run.cuts,
        seconds=round(clock.perf_counter() - started, 3),
        device=str(engine.torch_device),
        model=engine.source.label,
        precision=engine.precision,
        audio=audio,
        bad_packets=run.stats["bad_packets"],
        fp32_fallbacks=getattr(engine, "fp32_fallbacks", 0) - fallbacks_before,
        oom_backoffs=getattr(engine, "oom_backoffs", 0) - backoffs_before,
        hwaccel=hwaccel,
    )


def _open_segments(inp, out, info, target, engine, opts, enc, warn):
    """The segment writer and its journal: continued with --resume, else started afresh."""
    from .video.sink import VideoSink, container_of

    volatile = (
        "force",
        "resume",
        "skip_existing",
        "hwaccel",  # hardware and software decoders give the same pictures
        "queue_bytes",
        "segment_frames",
        "segment_seconds",
    )
    fingerprint = {k: str(v) for k, v in asdict(opts).items() if k not in volatile}
    fingerprint.update(
        model=engine.source.label,
        precision=engine.precision,
        scale=str(engine.scale),
        codec=enc.codec,
    )
    journal = open_journal(out, inp, fingerprint, opts.resume, opts.force)
    if journal.segments:
        n = len(journal.segments)
        warn(f"resuming {out.name} after {journal.frames_out} frames ({n} segments)")
    colour = _colour(info)
    fmt = container_of(out)

    def segment(path: Path) -> VideoSink:
        return VideoSink(
            path, info.width, info.height, target.write_rate, colour, info.bits, enc, fmt
        )

    return SegmentedSink(journal, segment, out.suffix), journal


def _colour(info: SourceInfo):
    from .video.source import Colour, guess_matrix

    if info.colour is not None:
        return info.colour
    m = guess_matrix(info.height)  # image sequences: tag as the untagged-source convention says
    return Colour(m, 1, 1 if m == 1 else 6, 1 if m == 1 else 6, False)


def _join(*threads: Worker) -> None:
    """Wait for the workers; after a cancel they notice within 0.1 s (queue waits poll)."""
    for t in threads:
        while t.is_alive():
            t.join(0.1)
