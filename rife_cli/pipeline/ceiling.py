"""`rife bench --pipeline`: how many frames a second this host can feed a GPU and encode.

The whole `rife interpolate` pipeline (probe, reader, scene detection, timing, batches, writer,
encoder, mux) runs with a stand-in for the engine that costs nothing: each made frame is its
pair's first frame. It takes the CUDA path's host side whatever the machine: decoded YUV planes
go to it (copied once, as into the page-locked upload buffer), and it hands back the encoder's
planes (copied once, as out of the download buffer); the device's colour conversions are left
out, as a GPU does them beside the network. In the same run, a bare PyAV decode and encode of the
same frames with nothing between gives what the codecs alone allow.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..engine.colour import PlaneFormat, Planes, Yuv420
from ..errors import UsageError

# Shares of the output frames that bound the two windows whose highest resident memory is
# compared: from the end of the warm-up to the middle, and from the middle to late in the run (not
# the end, when the queues drain). Peaks, not readings at one moment: the resident memory swings
# by the queues' fill and the C allocator's heaps (1080p, 64 MiB queues: 845-1011 MiB from one
# 150-frame reading to the next) while its highest value stays put unless something leaks.
WARM_UP = 0.2
MIDDLE = 0.55
LATE = 0.9


@dataclass
class _Source:
    label: str
    path: Path = Path("<stand-in>")


def first_frame_net():
    """A network (v4's interface: any timestep) that makes each pair's first frame."""
    import torch

    class FirstFrameNet(torch.nn.Module):
        family = "v4"
        pad_base = 32

        def forward(self, a, b, t, scale=1.0):
            return a

    return FirstFrameNet()


def device_stand_in(device: str):
    """An Interpolator on `device` running first_frame_net in fp32: the device path's own uploads,
    conversions and downloads around a network that costs nothing."""
    from ..engine import Interpolator

    return Interpolator(
        model="first frame",
        device=device,
        precision="fp32",
        network=first_frame_net(),
        batch_size=8,
    )


class StandInEngine:
    """What the pipeline sees of a CUDA engine, at no cost: YUV planes in (device_colour), the
    encoder's planes out, two batches in flight, any timestep. Made frames are copies of their
    pair's first frame, in the encoder's layout."""

    device_colour = True
    any_timestep = True
    family = "v4"
    concurrent_batches = 2
    precision = "none"
    scale = 1.0
    fp32_fallbacks = 0
    oom_backoffs = 0
    torch_device = "stand-in"

    def __init__(self, batch: int = 8):
        self.batch_size = batch
        self.source = _Source("stand-in (made frame = first frame)")

    def batch_for(self, width: int, height: int) -> int:
        return self.batch_size

    def stream(self):
        return contextlib.nullcontext()

    def close(self) -> None:
        pass

    def to_pair_tensors(self, firsts: Sequence, seconds: Sequence) -> tuple[list, list]:
        """The pictures "uploaded": each distinct one copied once (the pinned staging copy)."""
        copies: dict[int, object] = {}
        for f in (*firsts, *seconds):
            if id(f) not in copies:
                copies[id(f)] = _copy(f)
        return [copies[id(f)] for f in firsts], [copies[id(f)] for f in seconds]

    def make(self, a: list, b: list, requests: Sequence) -> list:
        return [a[r.pair] for r in requests]

    def to_arrays(
        self, outs: list, h: int, w: int, dtype=np.uint8, rounding="nearest", planes=None
    ):
        """The made frames "downloaded": as the encoder's planes (one copy, or a cheap repack
        between layouts of the same depth), else as BGR (converted on the CPU: not the CUDA
        path's cost; only where the encoder's format is not one the device writes)."""
        if planes is not None:
            return [Planes(_as_layout(p, planes), planes.pix_fmt, w, h) for p in outs]
        return [_bgr(p, dtype) for p in outs]

    def frames_for(
        self, firsts, seconds, requests, h, w, dtype=np.uint8, rounding="nearest", planes=None
    ):
        """The pipeline's one call per batch: "uploaded", made, "downloaded"."""
        a, b = self.to_pair_tensors(firsts, seconds)
        return self.to_arrays(self.make(a, b, requests), h, w, dtype, rounding, planes)


def _copy(picture):
    if isinstance(picture, Yuv420):
        return Yuv420(**{**picture.__dict__, "data": picture.data.copy()})
    return picture.copy()


def _name(pic: Yuv420) -> str:
    return pic.pix_fmt or ("nv12" if pic.interleaved else "yuv420p")


def _as_layout(pic, fmt: PlaneFormat) -> np.ndarray:
    """`pic` in the encoder's layout: a copy where they agree (the usual case), a repack of the
    chroma between planar and interleaved, else a conversion on the CPU."""
    want = fmt.layout
    if isinstance(pic, Yuv420):
        have = pic.layout
        same = (have.bits, have.sub_x, have.sub_y) == (want.bits, want.sub_x, want.sub_y)
        if same and have.interleaved == want.interleaved and have.msb == want.msb:
            return pic.data.copy()
        if same and have.bits == 8:
            h, w = pic.height, pic.width
            flat = pic.data.reshape(-1)
            luma, chroma = flat[: h * w], flat[h * w :]
            if have.interleaved:
                chroma = chroma.reshape(-1, 2).T
            else:
                chroma = chroma.reshape(2, -1).T
            return np.concatenate([luma, chroma.reshape(-1)]).reshape(-1, w)
    from ..engine.colour import bgr_to_planes

    x = _tensor(pic)
    out = bgr_to_planes(x, fmt)[0].numpy()
    return out.view(np.uint16) if out.dtype == np.int16 else out


def _tensor(pic):
    import torch

    from ..engine.colour import yuv420_to_bgr

    if isinstance(pic, Yuv420):
        data = pic.data.view(np.int16) if pic.data.dtype == np.uint16 else pic.data
        return yuv420_to_bgr(pic, torch.from_numpy(data))
    top = 65535.0 if pic.dtype == np.uint16 else 255.0
    return torch.from_numpy(pic[:, :, :3].astype(np.float32) / top).permute(2, 0, 1)[None]


def _bgr(pic, dtype) -> np.ndarray:
    if not isinstance(pic, Yuv420):
        return pic
    top = 65535.0 if dtype == np.uint16 else 255.0
    x = _tensor(pic)[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray((x * top).round().astype(dtype))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def pipeline_bench(
    input_path: str | Path,
    *,
    exp: int | None = None,
    multi: int | None = None,
    fps: str | None = None,
    codec: str | None = None,
    preset: str | None = None,
    crf: int | None = None,
    output: str | Path | None = None,
    pix_fmt: str | None = None,
    bare: bool = True,
    log: Callable[[str], None] | None = None,
    queue_bytes: int | None = None,
    device: str | None = None,
) -> dict:
    """Run the pipeline on `input_path` with the stand-in engine, then (with `bare`) PyAV's bare
    decode and encode of as many frames. Without `output`, the video goes to a temporary file
    that is removed. Returns {"fps_out", "frames_out", "seconds", "cpu_s_per_frame",
    "bare_fps_out", "bare_seconds", "bare_cpu_s_per_frame", "ratio", "frames_in", "size",
    "codec", "pix_fmt", "preset", "crf", "rss_warm_mib", "rss_late_mib", "rss_growth_mib",
    "steady_fps_out"}. steady_fps_out: the rate frames were handed to the writer from WARM_UP of
    them to the last, start-up and the final mux left out; it tracks the encoder once the
    writer's queue is full (`queue_bytes` small for a short input: a few frames' worth).
    With `device` ("cuda", "cuda:N"), the stand-in is a network on that device instead
    (first_frame_net in an Interpolator): the real uploads, colour conversions both ways and
    downloads run there, so the result is the ceiling with the device's own conversion work."""
    from ..engine import Request  # noqa: F401 - PyTorch loaded before the clock starts, as a
    from .run import Options, interpolate_video, prepare  # real run's engine has it loaded

    inp = Path(input_path)
    if exp is None and multi is None and fps is None:
        exp = 1
    engine = StandInEngine() if device is None else device_stand_in(device)
    tmp = Path(tempfile.mkdtemp(prefix="rife-pipeline-"))
    try:
        out = Path(output) if output is not None else tmp / f"out{_suffix(inp)}"
        settings = {"exp": exp, "multi": multi, "fps": fps, "codec": codec, "preset": preset}
        settings.update(crf=crf, pix_fmt=pix_fmt, force=output is None)
        if queue_bytes is not None:
            settings["queue_bytes"] = queue_bytes
        # The encoder's settings as the run fills them in (and any usage error, before timing).
        job = prepare(inp, out, None, Options(**settings), log or (lambda msg: None))
        if job.png:
            raise UsageError("bench --pipeline measures a video output; give -o a video file")
        enc = job.enc
        # Resident memory in the steady state (the queues filled, the encoder's look-ahead full):
        # its highest value in each window, read at every frame (/proc/self/statm: microseconds).
        rss: dict[str, float] = {}
        total_out = [0]
        marks: dict[str, tuple[int, float]] = {}

        def total(n):
            total_out[0] = n or 0

        def progress(n: int) -> None:
            now = time.perf_counter()
            marks["last"] = (n, now)
            if "warm" not in marks and total_out[0] and n >= WARM_UP * total_out[0]:
                marks["warm"] = (n, now)
            if not total_out[0]:
                return
            share = n / total_out[0]
            key = (
                "warm" if WARM_UP <= share < MIDDLE else "late" if MIDDLE <= share <= LATE else None
            )
            if key:
                rss[key] = max(rss.get(key, 0.0), _rss_mib())

        cpu0, t0 = _cpu_s(), time.perf_counter()
        s = interpolate_video(
            inp,
            out,
            engine_factory=lambda need: engine,
            **settings,
            progress=progress,
            total=total,
            warn=log,
        )
        seconds = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
        rss_end = _rss_mib()  # only where the input was too short to fill a window
        result = {
            "input": str(inp),
            "engine": "host side only" if device is None else f"conversions on {device}",
            "fps_out": round(s.frames_out / seconds, 2),
            "frames_out": s.frames_out,
            "frames_in": s.frames_in,
            "seconds": round(seconds, 3),
            "cpu_s_per_frame": round(cpu / max(1, s.frames_out), 5),
        }
        if "warm" in marks and marks["last"][0] > marks["warm"][0]:
            (n0, t0_), (n1, t1) = marks["warm"], marks["last"]
            result["steady_fps_out"] = round((n1 - n0) / (t1 - t0_), 2)
        result.update(
            codec=enc.codec,
            pix_fmt=enc.pix_fmt,
            preset=enc.preset,
            crf=enc.crf,
            rss_warm_mib=round(rss.get("warm", rss_end), 1),
            rss_late_mib=round(rss.get("late", rss_end), 1),
            rss_growth_mib=round(rss.get("late", rss_end) - rss.get("warm", rss_end), 1),
        )
        if bare:
            n, bare_s, bare_cpu, size = bare_transcode(inp, tmp / f"bare{out.suffix}", enc, s)
            result.update(
                bare_fps_out=round(n / bare_s, 2),
                bare_frames_out=n,
                bare_seconds=round(bare_s, 3),
                bare_cpu_s_per_frame=round(bare_cpu / max(1, n), 5),
                ratio=round(result["fps_out"] / (n / bare_s), 3),
                size=size,
            )
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _suffix(inp: Path) -> str:
    from ..video.sink import container_of

    return inp.suffix.lower() if container_of(inp) else ".mkv"


def bare_transcode(inp: Path, out: Path, enc, summary) -> tuple[int, float, float, str]:
    """PyAV alone: decode `inp` (its frame and slice threads on, as the reader has them) and
    encode each picture as many times as the pipeline wrote frames for it, with the pipeline's
    encoder settings and threads; converted only where the decoded format is not the encoder's.
    Returns (frames written, seconds, CPU seconds, WxH)."""
    import av

    from ..video.sink import container_of, encoder_options, encoder_threads

    if summary.frames_in < 1:
        raise UsageError(f"{inp}: no frames to time")
    per = Fraction(summary.frames_out, summary.frames_in)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    n = 0
    with av.open(str(inp)) as src, av.open(str(out), "w", format=container_of(out)) as dst:
        vs = src.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        size = f"{cc.width}x{cc.height}"
        rate = Fraction(summary.fps_out)
        s = dst.add_stream(enc.codec, rate=rate)
        s.width, s.height, s.pix_fmt = cc.width, cc.height, enc.pix_fmt
        s.time_base = tb = 1 / rate  # the stream's own may change when the muxer starts
        encoder_threads(s.codec_context)
        s.codec_context.options = encoder_options(enc)
        for i, frame in enumerate(src.decode(vs)):
            if frame.format.name != enc.pix_fmt:
                frame = frame.reformat(format=enc.pix_fmt)
            repeat = int((i + 1) * per) - int(i * per)
            for _ in range(repeat):
                frame.pts = n
                frame.time_base = tb
                frame.pict_type = av.video.frame.PictureType.NONE
                dst.mux(s.encode(frame))
                n += 1
        dst.mux(s.encode(None))
    return n, time.perf_counter() - t0, _cpu_s() - cpu0, size


def render(r: dict) -> str:
    """The bench's result in a few lines."""
    settings = " ".join(
        str(v)
        for v in (r["codec"], r["pix_fmt"], r["preset"], r["crf"] is not None and f"crf {r['crf']}")
        if v
    )
    lines = [
        (
            f"pipeline (stand-in network, {r['engine']}): {r['fps_out']:.1f} fps out, {r['frames_out']} frames "
            f"in {r['seconds']:.2f} s, host CPU {r['cpu_s_per_frame'] * 1000:.1f} ms per output "
            f"frame ({settings})"
        )
    ]
    if "bare_fps_out" in r:
        lines.append(
            f"bare PyAV decode + encode of the same frames: {r['bare_fps_out']:.1f} fps "
            f"(CPU {r['bare_cpu_s_per_frame'] * 1000:.1f} ms per frame); pipeline / bare = "
            f"{r['ratio']:.2f}x"
        )
    lines.append(
        f"resident memory at its highest: {r['rss_warm_mib']:.0f} MiB from {WARM_UP:.0%} to "
        f"{MIDDLE:.0%} of the frames, {r['rss_late_mib']:.0f} MiB from {MIDDLE:.0%} to {LATE:.0%} "
        f"({r['rss_growth_mib']:+.1f} MiB)"
    )
    return "\n".join(lines)
