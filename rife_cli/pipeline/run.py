"""Video in, video out: reader thread -> bounded queue -> inference -> bounded queue -> writer thread.

Knows frames, timestamps and the plan of which (pair, t) to make; reports progress by callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time as clock
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError, Interrupted, ModelError, OutputError, UsageError
from ..video.images import as_bgr, blend_alpha, merge
from ..video.pipes import (
    is_stdio,
    is_stream,
    join_raw,
    label,
    piped_output,
    send_to_stdout,
    spooled_input,
)
from ..video.source import SourceFrame, SourceInfo, probe, read_frames
from . import dedup as repeats
from . import scenes
from .queues import DONE, ByteQueue, Cancelled, Worker, wait_for
from .resume import (
    SEGMENT_FRAMES,
    SEGMENT_SECONDS,
    SegmentClock,
    SegmentedSink,
    open_journal,
    work_dir_for,
)
from .timing import Plan, Slot, Timing, parse_rate

QUEUE_BYTES = 512 << 20  # per queue; ~20 4K frames in 8-bit
TMP_TAG = ".rife-part"
FRAME_NAME = re.compile(r"\d{8}\.png")  # what ImageSink writes
# Options a resumed run may change: they do not change the frames made (hardware and software
# decoders give the same pictures).
RESUME_NEUTRAL = frozenset(
    {"force", "resume", "skip_existing", "hwaccel", "queue_bytes", "segment_frames",
     "segment_seconds", "format"}
)  # fmt: skip


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
    resized_frames: int = 0  # decoded frames of another size than the stream's, scaled to it
    skipped: bool = False  # --skip-existing found the output already there
    # frames redone in fp32: half precision gave NaN/Inf, or (CUDA) 4.0/4.1 large motion
    fp32_fallbacks: int = 0
    oom_backoffs: int = 0  # batches halved after running out of device memory
    hwaccel: str | None = None  # the device that decoded the video (--hwaccel); None: software
    duplicates: int = 0  # repeated frames dropped by --dedup (counted in frames_in)
    flashes: int = 0  # single-frame flashes: not blended into their neighbours, not cuts
    deinterlaced: str = ""  # how an interlaced source was deinterlaced; "": it was not

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
    input_fps: str | Fraction | None = None  # rate of an image folder (default 25)
    dedup: bool = False  # drop repeated frames (animation on twos/threes) before interpolating
    dedup_threshold: float = repeats.DEFAULT_THRESHOLD
    dedup_max_hold: int | None = None  # None: repeats.max_hold_for(source rate)
    queue_bytes: int = QUEUE_BYTES
    segment_frames: int = SEGMENT_FRAMES
    segment_seconds: float = SEGMENT_SECONDS
    deinterlace: str = "auto"  # auto (flag and idet), on, off: see video/filters.py
    # What the coordinator of a sharded run decided (order, evidence; filters.Interlace), given
    # to its shards with deinterlace "off" when it decided not to: idet runs once per input.
    interlace: tuple[str, str] | None = None
    format: str | None = None  # the muxer for -o - (video.pipes.PIPE_FORMATS); default Matroska


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def default_output(info: SourceInfo, label: str, png: bool) -> Path:
    stem = info.path.name if info.is_images else info.path.stem
    if png or info.is_images:
        return info.path.parent / f"{stem}_{label}"
    from ..video.sink import container_of

    ext = info.path.suffix.lower()
    ext = ext if ext in (".mp4", ".mkv", ".mov", ".webm") and container_of(info.path) else ".mp4"
    return info.path.with_name(f"{stem}_{label}{ext}")


def part_path(out: Path) -> Path:
    """Where the output is assembled: beside the target, so the final rename is atomic."""
    return out.with_name(f".{out.name}{TMP_TAG}{out.suffix}")


def _frames_inside(out: Path) -> Path:
    return out / f".frames{TMP_TAG}"


def png_part_path(out: Path) -> Path:
    """Where PNG frames are made: beside the target folder, or inside it where it is there and
    empty. That folder may be a mount point (it cannot be removed and replaced) or sit in a
    folder the user cannot write: its frames are then moved in, each by a rename."""
    return _frames_inside(out) if _empty_dir(out) else part_path(out)


def clean_leftovers(out: Path) -> None:
    inside = _frames_inside(out)
    if out.is_dir() and [p.name for p in out.iterdir()] == [inside.name]:
        shutil.rmtree(inside, ignore_errors=True)  # an earlier run's frames, cut short
    for p in out.parent.glob(f".{out.name}{TMP_TAG}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def input_rate(input_fps: str | Fraction | None, inp: Path) -> Fraction | None:
    """--input-fps as an exact rate; only an image folder takes one (a video has its own)."""
    if input_fps is None:
        return None
    if inp.exists() and not inp.is_dir():
        raise UsageError(
            f"--input-fps sets the rate of an image folder; {inp} is a video, "
            "whose rate comes from the file"
        )
    if isinstance(input_fps, Fraction):
        return input_fps
    try:
        return parse_rate(str(input_fps))
    except ValueError as exc:
        raise UsageError(f"--input-fps {exc}") from None


def check_output(out: Path, force: bool, inp: Path, png: bool = False) -> None:
    """Before any work: the output can be written. An empty folder is taken for a PNG sequence
    (the user made it for one); anything else already there needs --force."""
    parent = out.parent
    if out.resolve() == inp.resolve():
        raise UsageError(f"-o {out}: is the input; rife never writes over its input")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{out}: parent {parent} is not a directory")
    if not parent.exists():
        raise OutputError(f"{out}: directory {parent} does not exist")
    into = out if png and _empty_dir(out) else parent  # see png_part_path
    if not os.access(into, os.W_OK):
        raise OutputError(f"{out}: directory {into} is not writable")
    if out.is_dir() and any(not FRAME_NAME.fullmatch(p.name) for p in out.iterdir()):
        # --force replaces a folder of our own frames, never a folder holding anything else (so
        # this is said first: "use --force" would not help).
        raise OutputError(f"{out}: a directory holding other files; give a new or empty one")
    if out.exists() and not force and not (png and _empty_dir(out)):
        raise OutputError(f"{out}: exists; use --force to overwrite")
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
        self.hard = False  # a second signal: quit at once, waiting for nothing in flight

    def request(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def install_stop_handlers(notice: Callable[[str], None] | None = None) -> StopRequest:
    """First SIGINT/SIGTERM: finish the current pair, close the segment, exit 130/143 (said
    through `notice`). A second one stops at once. Not from the main thread (embedded use): the
    signals are left alone."""
    import signal

    from ..errors import Interrupted

    stop = StopRequest()

    def on_signal(signum, frame):
        code = 143 if signum == signal.SIGTERM else 130
        if stop.is_set():
            stop.hard = True  # the pipeline then waits for nothing still in flight
            raise Interrupted(code, "interrupted at once", hard=True)
        stop.request(code)
        if notice is not None:
            notice("stopping after the current pair (again to quit at once)")

    try:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    except ValueError:
        pass  # not the main thread
    return stop


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
        shard=None,
        out_planes=None,
    ):
        """With a journal, the run goes on after its finished segments and closes new ones. With
        hwaccel, the video is decoded on that device (see check_hwaccel). With a shard, only the
        pairs that start in it are made (see rife_cli.scale.shards). With out_planes (a
        rife_cli.engine.colour.PlaneFormat, see plane_format), made frames come from the engine as
        the encoder's planes."""
        self.info, self.target, self.engine, self.opts = info, target, engine, opts
        self.png, self.progress, self.warn = png, progress, warn
        self.cancel = threading.Event()
        done = journal.segments if journal is not None else []
        self.skip_until = journal.next_src if journal is not None else 0
        self.frames_in = 0
        self.video_start = Fraction(0)  # source time of the first frame: the output's 0
        self.frames_out = sum(seg.n_out for seg in done)
        self.cuts = sum(seg.cuts for seg in done)
        self.segment_cuts = 0
        self.stop = stop
        self.clock = None
        if journal is not None:
            self.clock = SegmentClock(opts.segment_frames, opts.segment_seconds)
        self.stopped = False
        self.stats: dict = {"bad_packets": 0, "resized_frames": 0}
        self.hwaccel: str | None = hwaccel
        self.shard = shard
        self.out_planes = out_planes
        self.enough = threading.Event()  # set by inference: the shard's last pair is in hand
        self.pool: ThreadPoolExecutor | None = None  # batch workers, when the engine takes two
        # batches in the workers' hands, oldest first, and the segment cuts waiting behind them
        self.pending: deque[tuple[list, Future] | SegmentCut] = deque()
        self.dedup = _dedup_stage(info, opts)
        self.scenes = scenes.SceneStage(opts.scene_threshold) if opts.scene_threshold > 0 else None

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
            start_at = self.shard.first if self.shard is not None else None
            frames = read_frames(
                self.info, self.warn, self.stats, self.hwaccel, planes, start_at,
                self._nvdec_device(planes),
            )  # fmt: skip
            if self.dedup is not None:
                # Over every frame, those a resumed run skips too: the same frames are dropped.
                frames = self.dedup.filter(frames)
            if self.scenes is not None:
                frames = self.scenes.filter(frames)  # frame.edge: cut, flash or neither
            for frame in frames:
                if self.enough.is_set():
                    break
                if frame.index < self.skip_until:
                    q.put(_Skipped(frame.index, frame.time), 0)
                    continue
                q.put(frame, frame.nbytes * (2 if frame.original is not None else 1))
        finally:
            q.put(DONE)

    def _nvdec_device(self, planes: bool):
        """The engine's GPU, where NVDEC's pictures are handed to it (rife_cli.video.nvdec): with
        --hwaccel cuda and YUV planes, and without --dedup, which reads each picture's luma on
        the host. None otherwise."""
        gpu = gpu_index(self.engine)
        if not planes or gpu is None or self.dedup is not None:
            return None
        if not (self.hwaccel or "").startswith("cuda"):
            return None
        import torch

        return torch.device("cuda", gpu)

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
            elif image is None or not isinstance(image, np.ndarray):
                sink.write(index, image, original)  # a source frame, or the encoder's planes
            else:
                sink.write(index, as_bgr(image), original)

    # ----- inference
    def infer(self, src_q: ByteQueue, out_q: ByteQueue, end_hold: bool) -> None:
        plan = None
        prev: SourceFrame | None = None
        batch: list[tuple[SourceFrame, SourceFrame, list[Slot], bool]] = []
        end = self.shard.end if self.shard is not None else None
        self.pairs = self.batch_pairs()
        last_skipped = -1
        while (frame := src_q.get()) is not DONE:
            if end is not None and frame.time >= end:
                # the next shard's first frame: it ends this shard's last pair, then we stop
                self.enough.set()
                if prev is not None and not isinstance(frame, _Skipped):
                    self.add_pair(batch, prev, frame, plan)
                self.flush(batch, out_q)
                self.drain(out_q)
                while src_q.get() is not DONE:  # let the reader see `enough` and finish
                    pass
                if prev is not None:
                    out_q.put(SegmentCut(frame.index, self.segment_cuts))
                return
            self.frames_in += 1
            if plan is None:
                # a shard places its frames on the whole input's output grid
                origin = self.info.start if self.shard is not None else frame.time
                plan = Plan(self.target.rate, origin)
                self.video_start = origin
            if isinstance(frame, _Skipped):
                last_skipped = frame.index
                continue  # inside a segment finished by an earlier run
            if prev is not None:
                if (
                    self.stop is not None
                    and self.stop.is_set()
                    or self.clock is not None
                    and self.clock.full()
                ):
                    self.flush(batch, out_q)
                    batch = []
                    # In line behind the batches still being made: the writer closes the segment
                    # after their frames, and the engine never runs dry at a cut.
                    self.cut(out_q, SegmentCut(prev.index, self.segment_cuts))
                    self.segment_cuts = 0
                    if self.clock is not None:
                        self.clock.reset()
                    if self.stop is not None and self.stop.is_set():
                        self.drain(out_q)
                        self.stopped = True
                        return
                self.add_pair(batch, prev, frame, plan)
                if self.batch_full(batch):
                    self.flush(batch, out_q)
                    batch = []
                    self.pairs = self.batch_pairs()  # smaller after an out-of-memory back-off
            prev = frame
        if prev is None:
            if self.shard is not None:
                return  # nothing of the input lies in this shard (or all of it is done)
            if self.skip_until and last_skipped + 1 == self.skip_until:
                return  # every segment was finished (killed in the join): only the join is left
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

    def batch_full(self, batch) -> bool:
        """A batch goes to the engine once batch_size of its pairs need the network. Pairs that do
        not (scene cuts, pairs whose output frames are all source frames) count too, against twice
        that: a long run of them (a slideshow, a high --scene-threshold) flows on to the writer
        instead of piling up here with all its frames."""
        size = self.pairs
        return len(batch) >= 2 * size or sum(map(_needs_network, batch)) >= size

    def batch_pairs(self) -> int:
        """Pairs per batch: the engine's choice for this frame size where it makes one (on CUDA
        from its memory model, smaller after an out-of-memory back-off), else its batch size."""
        expect = getattr(self.engine, "expect_outputs", None)
        if expect is not None:  # made frames a pair holds on the device until its download
            f = self.target.factor
            expect(f.numerator - 1 if f.denominator == 1 else -(-f.numerator // f.denominator))
        batch_for = getattr(self.engine, "batch_for", None)
        return batch_for(self.info.width, self.info.height) if batch_for else self.engine.batch_size

    def add_pair(self, batch: list, prev: SourceFrame, frame: SourceFrame, plan: Plan) -> None:
        """The pair (prev, frame) with its output slots and whether it is a scene cut."""
        cut = frame.edge in scenes.HARD  # nothing blended across a cut or a flash
        self.cuts += frame.edge == scenes.CUT
        self.segment_cuts += frame.edge == scenes.CUT
        batch.append((prev, frame, plan.slots(prev.time, frame.time), cut))

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
        while sum(not isinstance(p, SegmentCut) for p in self.pending) >= depth:
            self.emit_oldest(q)

    def cut(self, q: ByteQueue, marker: SegmentCut) -> None:
        """Close the segment after the frames of every batch handed out so far: the marker
        waits in `pending` behind them (the workers go on), or goes at once if none is there."""
        if self.pending:
            self.pending.append(marker)
        else:
            q.put(marker)

    def drain(self, q: ByteQueue) -> None:
        """Emit every batch still in the workers' hands (at a stop, and at the end)."""
        while self.pending:
            self.emit_oldest(q)

    def emit_oldest(self, q: ByteQueue) -> None:
        """The oldest batch's frames, then the segment cuts that waited for them."""
        batch, made = self.pending.popleft()
        self.emit_batch(batch, wait_for(made), q)
        while self.pending and isinstance(self.pending[0], SegmentCut):
            q.put(self.pending.popleft())

    def close(self, wait: bool = True) -> None:
        """Stop the batch workers, if any: waiting for the batches they are making, or (when told
        to quit at once) leaving them to finish on their own."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None

    def make(self, batch) -> dict[tuple[int, Fraction], np.ndarray]:
        """The made frames of a batch, by (pair in batch, t): uploaded, made and downloaded in the
        calling thread (on CUDA on its own stream)."""
        from ..engine import Request

        need = [i for i, pair in enumerate(batch) if _needs_network(pair)]
        made: dict[tuple[int, Fraction], np.ndarray] = {}
        if not need:
            return made
        stream = getattr(self.engine, "stream", contextlib.nullcontext)
        first = batch[0][0]
        if first.image is not None:
            dtype = first.image.dtype
        else:
            dtype = np.uint16 if first.planes.layout.bits > 8 else np.uint8
        reqs = [Request(j, s.t) for j, i in enumerate(need) for s in batch[i][2] if s.t]
        with stream():
            # upload, make, one download with the frames' finite flags (fp32 redo after it)
            arrays = self.engine.frames_for(
                [batch[i][0].picture for i in need],
                [batch[i][1].picture for i in need],
                reqs,
                self.info.height,
                self.info.width,
                dtype,
                planes=self.out_planes,
            )
        for r, arr in zip(reqs, arrays):
            made[(need[r.pair], r.t)] = arr
        return made

    def emit_batch(self, batch, made: dict[tuple[int, Fraction], np.ndarray], q: ByteQueue):
        for i, (p, n, slots, cut) in enumerate(batch):
            # Across a cut each side holds half the gap; across a jump in the timestamps the
            # picture before it holds until the next one's own time (its sound starts there).
            turn = Fraction(1) if n.edge == scenes.JUMP else Fraction(1, 2)
            for s in slots:
                if s.t == 0 or (cut and s.t <= turn):
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


def _needs_network(pair) -> bool:
    """A (previous, next, slots, cut) pair has frames to make: not a cut, and some t > 0."""
    _, _, slots, cut = pair
    return not cut and any(s.t for s in slots)


@dataclass
class _Skipped:
    """A source frame already covered by a finished segment: only its place in time matters."""

    index: int
    time: Fraction


@dataclass
class Job:
    """One input's plan, checked before any work: what to read, at which rate, into what."""

    inp: Path
    info: SourceInfo
    target: object  # timing.Target
    out: Path
    png: bool
    enc: object | None  # video.sink.EncodeOptions, filled in and checked; None for PNG
    hwaccel: str | None
    opts: Options
    skipped: bool = False  # --skip-existing found the output there
    decoder: str | None = None  # the hwaccel as opened, on the engine's GPU ("cuda:1")


def prepare(
    input,
    output,
    output_dir,
    opts: Options,
    warn: Callable[[str], None],
    sharded: bool = False,
    hardware: bool = True,
    claimed: dict | None = None,
) -> Job:
    """Probe the input and settle the output: its name, its encoder (opened once to prove it
    starts), and, unless the job is `sharded` (its workers write into a folder the coordinator
    checked), that it may be written. Usage and input errors come from here, before any work.
    Not `hardware`: --hwaccel and the encoder are left to be checked where the work runs (a
    --ray head may have no GPU; rife_cli.scale.ray_cluster checks them on a worker)."""
    inp = Path(input)
    opts.input_fps = input_rate(opts.input_fps, inp)  # exact: 23.976 resumes 24000/1001
    info = probe(inp, opts.input_fps)
    interlace = _interlace(info, opts, warn)
    hwaccel = None
    if opts.hwaccel and not info.is_images and hardware:
        from ..video.source import check_hwaccel

        if check_hwaccel(info, opts.hwaccel):
            hwaccel = opts.hwaccel
        else:
            warn(f"{inp}: no {opts.hwaccel} decoder for its codec; decoding on the CPU")
    target = Timing.from_options(opts.exp, opts.multi, opts.fps, opts.slowmo).target(info.rate)
    from ..video.sink import container_of

    png = (
        opts.png
        or (output is not None and str(output).endswith(os.sep))
        or (info.is_images and (output is None or container_of(Path(output)) is None))
    )
    if info.alpha and not info.is_images:
        warn(f"{inp}: its alpha channel is dropped: rife writes opaque frames")
    if info.is_images:
        from ..video.images import missing_numbers

        gaps = missing_numbers(info.images)
        if gaps:  # a render that dropped frames: the rest would play early without a word
            shown = ", ".join(map(str, gaps[:5])) + (
                f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
            )
            warn(
                f"{inp}: frame number{'s' * (len(gaps) > 1)} {shown} missing from the "
                "sequence; the images are taken "
                "in order, so those after a gap come one frame early each"
            )
    if opts.resume and png:
        raise UsageError(
            "--resume works for video outputs; PNG sequences are rewritten from the start"
        )
    if output is not None:
        out = Path(output)
        if out.name in ("", ".."):
            out = Path(os.path.abspath(out))  # "-o ." or "-o ../": the folder by its own name
    else:
        out = default_output(info, target.label(), png)
        if output_dir is not None:
            out = Path(output_dir) / out.name
    if interlace is not None:
        # One frame per field from here on; the output rate stays what was asked of the frame
        # rate (25i --exp 1: 50p, every frame a field), so the factor is over the field rate.
        from ..video.source import as_fields

        info = as_fields(info, interlace)
        target = replace(target, factor=target.rate / info.rate)
    if claimed is not None:
        earlier = claimed.setdefault(out.resolve(), inp)
        if earlier != inp:
            raise OutputError(
                f"{out}: also the output of {earlier} in this run (the same name from another "
                "folder); run them apart or rename one"
            )
    finished = opts.resume and not work_dir_for(out).exists()  # nothing left to resume
    if (opts.skip_existing or finished) and out.exists() and not _empty_dir(out):
        return Job(inp, info, target, out, png, None, hwaccel, opts, skipped=True)
    enc = None
    if not png:
        from ..video import hdr
        from ..video.sink import EncodeOptions, prepare_encoding

        hdr10 = hdr.parse(info.picture.mastering_display, info.picture.content_light)
        is_hdr = hdr10 is not None or bool(
            info.colour and info.colour.transfer in hdr.HDR_TRANSFERS
        )
        enc = prepare_encoding(
            out,
            EncodeOptions(opts.codec, opts.crf, opts.preset, opts.pix_fmt, hdr10),
            info.width,
            info.height,
            target.write_rate,
            info.bits,
            is_hdr,
            info.pix_fmt,
            lambda msg: warn(f"{inp}: {msg}"),
            open_encoder=hardware,
        )
        if enc.frame_size != (info.width, info.height):
            w, h = enc.frame_size  # an odd size cropped by a pixel: by the reader, for all
            info = replace(info, width=w, height=h, stream_size=(info.width, info.height))
        if hdr10 is not None and enc.codec not in hdr.HDR_ENCODERS:
            warn(
                f"--codec {enc.codec} cannot carry HDR10 mastering-display/light-level metadata; "
                "dropped (libx265 or libsvtav1 keep it)"
            )
    if not sharded:
        check_output(out, opts.force, inp, png)
        clean_leftovers(out)
    return Job(inp, info, target, out, png, enc, hwaccel, opts)


def _interlace(info: SourceInfo, opts: Options, warn: Callable[[str], None]):
    """Whether and how to deinterlace (--deinterlace auto|on|off), from the first frames, unless
    a sharded run's coordinator decided it for this shard (Options.interlace)."""
    from ..video import filters

    mode = opts.deinterlace
    if mode not in filters.MODES:
        raise UsageError(f"--deinterlace {mode!r}: use auto, on or off")
    if info.is_images or mode == "off":
        return None
    if opts.interlace is not None:
        return filters.Interlace(*opts.interlace)
    verdict = filters.examine(info.path)
    if mode == "auto" and verdict.suspect:
        warn(
            f"{info.path}: idet finds interlacing in the first frames of a stream not stated "
            "interlaced; taken as progressive (--deinterlace on deinterlaces it)"
        )
    return verdict.decide(mode)


# The options of the Interpolator that interpolate_video passes on when it makes the engine.
ENGINE_KEYS = frozenset(
    {"model", "device", "precision", "scale", "batch_size", "offline", "notice", "compile",
     "cuda_graphs"}
)  # fmt: skip


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
    shard=None,
    claimed: dict | None = None,
    **options,
) -> Summary:
    """Interpolate one video or image directory. Options are those of `Options` plus, when no
    engine_factory is given, those of `Interpolator` (model, device, precision, scale, batch_size).
    `input` may be "-" (standard input) or an http(s) URL, `output` "-" (standard output, as
    Options.format says). With a `shard` (rife_cli.scale.shards), only its part is made, into its
    folder of segments beside `output` (which must be given); whoever cut the input checks the
    output and joins the shards. `claimed` maps the outputs of a batch's inputs so far to them:
    two inputs of one run never write the same file."""
    started = clock.perf_counter()
    warn = warn or (lambda msg: None)
    engine_opts = {k: options.pop(k) for k in list(options) if k in ENGINE_KEYS}
    opts = Options(**options)
    check_pipes(input, output, opts)
    if is_stream(input) and output is None and output_dir is None:
        output_dir = Path.cwd()  # a URL's default name, here: not beside its spooled copy
    with spooled_input(input) as source, piped_output(output, opts.format) as pipe:
        job = prepare(
            source, pipe.path if pipe else output, output_dir, opts, warn, shard is not None,
            claimed=claimed,
        )  # fmt: skip
        if job.skipped:
            return Summary(input=str(job.inp), output=str(job.out), skipped=True)
        engine = _engine(job, engine_factory, engine_opts)
        job = _on_engine_gpu(job, engine)
        before = _engine_counts(engine)
        if job.info.frames and total:
            total(_expected_frames(job))
        try:
            run, audio = _make(job, engine, progress, warn, stop, shard)
        except Interrupted as exc:
            if not (is_stream(input) or pipe is not None):
                raise
            # A pipe cannot be read again from where it stopped: nothing to resume, so nothing
            # of the run is kept (its segments would be a folder no command can use).
            shutil.rmtree(work_dir_for(job.out), ignore_errors=True)
            raise Interrupted(
                exc.exit_code,
                "interrupted; a pipe cannot be resumed: run the command again",
                exc.hard,
            ) from None
        if pipe is not None:
            send_to_stdout(job.out)
    summary = _summary(job, run, engine, before, audio, started)
    if is_stream(input) or pipe is not None:
        summary.input = label(input) if is_stdio(input) else str(input)
        summary.output = "standard output" if pipe is not None else summary.output
    return summary


def check_pipes(input, output, opts: Options) -> None:
    """What cannot work on a pipe, refused before any work."""
    if not (is_stdio(input) or is_stdio(output)):
        return
    where = "standard input" if is_stdio(input) else "standard output"
    if opts.resume:
        raise UsageError(f"--resume needs files: {where} cannot be read or written again")
    if opts.skip_existing and is_stdio(output):
        raise UsageError("--skip-existing has no output file to look for with -o -")
    if opts.png and is_stdio(output):
        raise UsageError("--png writes a folder of files; -o - takes a video stream")
    if is_stdio(input) and output is None:
        raise UsageError("reading standard input: say where to write with -o FILE or -o -")


def _engine(job: Job, engine_factory, engine_opts: dict):
    """The engine for this job: one that makes any timestep where the plan needs it."""
    f, info, opts = job.target.factor, job.info, job.opts
    need_any = f.denominator != 1 or (f.numerator & (f.numerator - 1)) != 0 or info.vfr
    # --dedup: the distinct frames are unevenly spaced, so the timesteps are not dyadic.
    need_any = need_any or opts.dedup
    if engine_factory is None:
        from ..engine import interpolator_for

        def engine_factory(need):
            return interpolator_for(need, **engine_opts)

    engine = engine_factory(need_any)
    if need_any and not engine.any_timestep:
        if opts.dedup:
            why = "--dedup"
        elif info.vfr and info.grid is not None:
            # on a grid with points missing: held or dropped frames, or the end of a file cut off
            # mid-GOP (its last B-frames never arrived)
            why = "a source with frames missing from its timeline (held or dropped, or cut off)"
        elif info.vfr:
            why = "a variable-frame-rate source"
        else:
            why = f"a {float(f):g}x factor"
        if hasattr(engine, "close"):
            engine.close()  # its CPU lanes' threads, started with it
        raise ModelError(
            f"{job.inp}: model {engine.source.label} makes only midpoints and cannot serve {why}; "
            "use --model v4.0"
        )
    return engine


def _on_engine_gpu(job: Job, engine) -> Job:
    """NVDEC and NVENC on the engine's own GPU (a --devices worker's), not on the first."""
    gpu = gpu_index(engine)
    if gpu is None:
        return job
    decoder = f"{job.hwaccel}:{gpu}" if job.hwaccel else None
    enc = replace(job.enc, gpu=gpu) if job.enc is not None else None
    return replace(job, decoder=decoder, enc=enc)


def _engine_counts(engine) -> tuple[int, int]:
    """The engine's fp32 fallbacks and out-of-memory back-offs so far (it may serve several jobs)."""
    return getattr(engine, "fp32_fallbacks", 0), getattr(engine, "oom_backoffs", 0)


def _expected_frames(job: Job) -> int:
    """The progress bar's total: the frames made of the pictures counted, or for a video the
    frames its timeline holds where that is more (held gaps and jumps in the timestamps)."""
    f, n, info = job.target.factor, job.info.frames, job.info
    if job.png:
        return int((n - 1) * f) + 1
    if info.duration and info.duration_is_video:
        return max(int(n * f), round(info.duration * job.target.rate))
    return int(n * f)


def _make(job: Job, engine, progress, warn, stop, shard) -> tuple[_Run, list[str]]:
    """The run itself: frames read, made and written, then the output put in place. Returns the
    run (its counters) and the audio tracks carried."""
    part = png_part_path(job.out) if job.png else part_path(job.out)
    if job.png:
        from ..video.sink import ImageSink

        sink, journal = ImageSink(part, job.info.bits), None
    else:
        sink, journal = _open_segments(
            job.inp, job.out, job.info, job.target, engine, job.opts, job.enc, warn, shard
        )
    run = _Run(job.info, job.target, engine, job.opts, job.png, progress, warn, stop=stop,
               journal=journal, hwaccel=job.decoder or job.hwaccel, shard=shard,
               out_planes=plane_format(job.info, job.enc, engine, job.opts, job.png))  # fmt: skip
    ok = False
    try:
        _drive(run, sink, end_hold=not job.png and (shard is None or shard.last), stop=stop)
        _check_finished(run, job, stop)
        sink.close()
        audio = _put_in_place(job, run, sink, journal, shard, warn)
        ok = True
    except (InputError, ModelError, UsageError):
        # The input itself is at fault: nothing worth resuming.
        if journal is not None and shard is None:
            shutil.rmtree(journal.folder, ignore_errors=True)
        raise
    finally:
        if hasattr(engine, "close") and not (stop is not None and stop.hard):
            engine.close()  # its CPU lanes' threads; they start again if the engine is used again
        if not ok:
            sink.abort()
        if part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)
    return run, audio


def _drive(run: _Run, sink, end_hold: bool, stop: StopRequest | None) -> None:
    """Reader and writer threads around inference in this thread; every thread joined on return,
    a worker's own failure raised."""
    src_q = ByteQueue(run.opts.queue_bytes, run.cancel)
    out_q = ByteQueue(run.opts.queue_bytes, run.cancel)
    reader = Worker("reader", lambda: run.read(src_q), run.cancel)
    writer = Worker("writer", lambda: run.write(out_q, sink), run.cancel)
    reader.start()
    writer.start()
    try:
        run.infer(src_q, out_q, end_hold=end_hold)
        out_q.put(DONE)
        if run.stopped:
            run.cancel.set()  # the reader may be blocked on a full queue
    except Cancelled:
        pass  # a worker failed and cancelled the run; its own error is raised below
    except InputError:
        # The input ended early ("no frames"): a reader that failed says why. Its stages
        # (--dedup, scenes) hold frames back, so it can fail before inference saw a frame.
        run.cancel.set()
        _join(reader)
        reader.check()
        raise
    except BaseException:  # any failure here (Ctrl-C too): stop the workers, then re-raise
        run.cancel.set()
        raise
    finally:
        try:
            run.close(wait=not (stop is not None and stop.hard))
        finally:
            _join(reader, writer)
    writer.check()
    if not run.stopped:
        reader.check()


def _check_finished(run: _Run, job: Job, stop: StopRequest | None) -> None:
    """A stop request ends the run here, saying how to go on; a cancelled run fails."""
    if run.stopped:
        from ..errors import Interrupted

        name = job.out.name
        if job.png:  # nothing is kept of a PNG sequence, and --resume refuses one
            why = f"interrupted; PNG output restarts: run the same command again for {name}"
        else:
            why = f"interrupted; the same command with --resume continues {name}"
        raise Interrupted(stop.exit_code, why)
    if run.cancel.is_set():
        raise OutputError(f"{job.out}: run cancelled")


def _put_in_place(job: Job, run: _Run, sink, journal, shard, warn) -> list[str]:
    """The finished output under its name: a shard marked done, a PNG folder renamed, or the
    video joined with the source's other tracks. Returns the audio tracks carried."""
    out = job.out
    if shard is not None:
        # where the pictures' clock started again, for the join's other tracks (one shard holds
        # such an input whole: scale.devices)
        restarts = [str(r) for r in run.stats.get("restarts", ())]
        shard.done_marker(out).write_text(json.dumps(restarts))
        return []
    if job.png:
        inside = _frames_inside(out)
        if inside.is_dir():  # made inside the empty folder check_output took
            for frame in sorted(inside.iterdir()):
                os.replace(frame, out / frame.name)
            inside.rmdir()
            return []
        if out.exists() and job.opts.force:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        elif out.exists():
            raise OutputError(f"{out}: appeared during the run; use --force to overwrite")
        os.replace(part_path(out), out)
        return []
    rate = job.target.write_rate
    audio = finish_video(
        sink.files(), job.inp, job.info, out, job.opts.slowmo, run.video_start, warn, rate,
        restarts=tuple(run.stats.get("restarts", ())),
    )  # fmt: skip
    shutil.rmtree(journal.folder, ignore_errors=True)
    return audio


def _summary(job: Job, run: _Run, engine, before: tuple[int, int], audio, started) -> Summary:
    info = job.info
    duration = Fraction(run.frames_out) / job.target.write_rate
    fields = 2 if info.interlace else 1
    return Summary(
        input=str(job.inp),
        output=str(job.out),
        # an interlaced source's frames, not its fields
        frames_in=(run.frames_in + (run.dedup.dropped if run.dedup else 0) + fields - 1) // fields,
        frames_out=run.frames_out,
        fps_in=_rate_text(info.rate / fields),
        fps_out=_rate_text(job.target.write_rate),
        duration=float(duration),
        scene_cuts=run.cuts,
        seconds=round(clock.perf_counter() - started, 3),
        device=str(engine.torch_device),
        model=engine.source.label,
        precision=engine.precision,
        audio=audio,
        bad_packets=run.stats["bad_packets"],
        resized_frames=run.stats["resized_frames"],
        fp32_fallbacks=getattr(engine, "fp32_fallbacks", 0) - before[0],
        oom_backoffs=getattr(engine, "oom_backoffs", 0) - before[1],
        hwaccel=job.hwaccel,
        duplicates=run.dedup.dropped if run.dedup else 0,
        flashes=run.scenes.flashes if run.scenes else 0,
        deinterlaced=info.interlace.describe(info.rate / 2) if info.interlace else "",
    )


# FFmpeg's colour matrix numbers (AVColorSpace), as a message names them.
COLOUR_MATRICES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020c", 7: "smpte240m"}


def _timed_tracks(inp: Path, info: SourceInfo) -> str:
    """What of the source runs on its timeline besides the video: "audio, subtitles and
    chapters", or the part of that it has ("" for none)."""
    names = [n for n, has in (("audio", info.has_audio), ("subtitles", info.has_subtitles)) if has]
    if not info.is_images and Path(inp).is_file():  # not a pipe, which would be read again
        import av

        try:
            with av.open(str(inp), metadata_errors="replace") as c:
                if c.chapters():
                    names.append("chapters")
        except (av.FFmpegError, OSError):
            pass  # gone meanwhile: what is known is said
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def finish_video(
    segments: list[Path],
    inp: Path,
    info: SourceInfo,
    out: Path,
    slowmo: bool,
    video_start: Fraction,
    warn: Callable[[str], None],
    rate: Fraction | None = None,
    restarts: tuple = (),
) -> list[str]:
    """The output file from its video segments (frames at `rate`) and the source's other tracks,
    written beside it and renamed into place; `restarts`: the reader's moves of the pictures
    where their clock started again, which the other tracks follow (video.mux.Keep). Returns the
    audio tracks as carried (codec names)."""
    from ..video.mux import Keep, mux
    from ..video.sink import container_of

    fmt = container_of(out)
    tracks = not slowmo and not info.is_images and fmt != "yuv4mpegpipe"
    if slowmo and (timed := _timed_tracks(inp, info)):
        warn(f"--slowmo: {timed} dropped (their timing would not match the slowed video)")
    elif fmt == "yuv4mpegpipe" and info.has_audio:
        warn("yuv4mpegpipe carries raw video only: audio dropped")
    if fmt == "yuv4mpegpipe" and info.colour is not None and info.colour.tagged:
        # Y4M states the range but no matrix, primaries or transfer: the reader guesses them
        warn(
            "yuv4mpegpipe stores no colour matrix, primaries or transfer: the reader assumes "
            f"its own (the source's matrix is {COLOUR_MATRICES.get(info.colour.matrix, 'other')})"
        )
    keep = Keep(inp if tracks else None, video_start, info.picture.display_matrix, restarts)
    part = part_path(out)
    try:
        if fmt == "yuv4mpegpipe":
            join_raw(segments, part, rate or info.rate)
            os.replace(part, out)
            return []
        report = mux(segments, keep, part, fmt, warn, rate)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return report.audio


def _dedup_stage(info: SourceInfo, opts: Options) -> repeats.Dedup | None:
    """The --dedup stage; a hold that ends in a scene cut keeps its last copy (see Dedup)."""
    if not opts.dedup:
        return None
    hold = opts.dedup_max_hold or repeats.max_hold_for(info.rate)
    threshold = opts.scene_threshold

    def hard(a: SourceFrame, b: SourceFrame) -> bool:
        return scenes.is_cut(scenes.thumb_of(a), scenes.thumb_of(b), threshold)

    return repeats.Dedup(opts.dedup_threshold, hold, hard if threshold > 0 else None)


def _open_segments(inp, out, info, target, engine, opts, enc, warn, shard=None):
    """The segment writer and its journal: continued with --resume, else started afresh."""
    from ..video.sink import VideoSink, container_of, segment_container

    fingerprint = {k: str(v) for k, v in asdict(opts).items() if k not in RESUME_NEUTRAL}
    fingerprint.update(
        model=engine.source.label,
        precision=engine.precision,
        scale=str(engine.scale),
        codec=enc.codec,
    )
    folder = shard.folder(out) if shard is not None else None
    journal = open_journal(out, inp, fingerprint, opts.resume, opts.force, folder)
    if journal.segments:
        n = len(journal.segments)
        warn(f"resuming {out.name} after {journal.frames_out} frames ({n} segments)")
    colour = _colour(info)
    fmt, ext = segment_container(container_of(out))

    def segment(path: Path) -> VideoSink:
        return VideoSink(
            path,
            info.width,
            info.height,
            target.write_rate,
            colour,
            info.bits,
            enc,
            fmt,
            info.picture.sar,
        )

    return SegmentedSink(journal, segment, ext or out.suffix), journal


def gpu_index(engine) -> int | None:
    """The CUDA device the engine runs on (its index, the current device's where it names none);
    None off CUDA."""
    dev = getattr(engine, "torch_device", None)
    if getattr(dev, "type", None) != "cuda":
        return None
    if dev.index is not None:
        return dev.index
    import torch

    return torch.cuda.current_device()


def plane_format(info: SourceInfo, enc, engine, opts: Options, png: bool):
    """The encoder's planes that made frames are converted to on the device, or None for BGR:
    where the engine converts colour on the device (CUDA), the output is a video, and the
    encoder's pixel format is one the device writes at the source's depth (8-bit sources to
    8-bit formats, deeper ones to 10-bit: swscale dithers going down, which the device does not
    copy). --montage and image sequences (alpha, gray) keep BGR."""
    from ..engine.colour import LAYOUTS, PlaneFormat, full_range_format

    if not getattr(engine, "device_colour", False) or png or opts.montage or info.is_images:
        return None
    layout = LAYOUTS.get(enc.pix_fmt) if enc is not None else None
    if layout is None or (layout.bits > 8) != (info.bits > 8):
        return None
    colour = _colour(info)
    full = colour.range == 2 or full_range_format(enc.pix_fmt)  # yuvj: full, whatever is said
    return PlaneFormat(enc.pix_fmt, colour.matrix, full, 65535 if info.bits > 8 else 255)


def _colour(info: SourceInfo):
    from ..video.source import Colour, guess_matrix

    if info.colour is not None:
        return info.colour
    m = guess_matrix(info.height)  # image sequences: tag as the untagged-source convention says
    return Colour(m, 1, 1 if m == 1 else 6, 1 if m == 1 else 6, False)


def _join(*threads: Worker) -> None:
    """Wait for the workers; after a cancel they notice within 0.1 s (queue waits poll)."""
    for t in threads:
        while t.is_alive():
            t.join(0.1)
