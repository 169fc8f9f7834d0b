"""`rife doctor`: what this machine offers the tool (PyTorch, GPUs, codecs, CPU, models, disk) and
the flags it suggests, in one screen or as JSON."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

CODECS = ("h264", "hevc", "av1")
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "asimd")


@dataclass
class Gpu:
    index: int
    name: str
    memory_gib: float
    free_gib: float
    capability: str
    fp16: bool
    bf16: bool


@dataclass
class Codec:
    name: str
    nvdec_built: bool  # this PyAV's FFmpeg carries the NVIDIA decoder for it
    nvdec_works: bool | None  # decoded a test clip on the GPU (None: not tried)
    nvenc_built: bool
    nvenc_works: bool | None  # opened the encoder (None: not tried)


@dataclass
class Report:
    python: str
    torch: str
    cuda: str | None  # the CUDA PyTorch was built with
    cudnn: int | None
    gpus: list[Gpu]
    pyav: str
    ffmpeg: str
    codecs: list[Codec]
    cpu: str
    cores: int
    cpu_features: list[str]
    lanes: int
    rife_home: str
    models: dict[str, str | None]  # name -> cached path (None: not cached)
    disk_free_gib: float | None
    env: dict[str, str] = field(default_factory=dict)  # variables that change what rife does
    # The host's ceiling (a short `rife bench --pipeline` at 1080p): None when not measured.
    pipeline: dict | None = None
    suggest: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _cpu() -> tuple[str, list[str]]:
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name in ("", platform.machine()):
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name, [f for f in CPU_FEATURES if f in flags]


def _works(device, dtype) -> bool:
    """A small convolution in this precision runs on the device and gives finite numbers."""
    import torch

    try:
        x = torch.rand(1, 8, 32, 32, device=device)
        conv = torch.nn.Conv2d(8, 8, 3, padding=1).to(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
            y = conv(x)
        torch.cuda.synchronize(device)
        return y.dtype == dtype and bool(torch.isfinite(y).all())
    except (RuntimeError, TypeError):
        return False


def _gpus() -> list[Gpu]:
    import torch

    out = []
    if not torch.cuda.is_available():
        return out
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        dev = torch.device("cuda", i)
        free, total = torch.cuda.mem_get_info(dev)
        out.append(
            Gpu(
                index=i,
                name=p.name,
                memory_gib=round(total / 2**30, 1),
                free_gib=round(free / 2**30, 1),
                capability=f"{p.major}.{p.minor}",
                fp16=_works(dev, torch.float16),
                bf16=_works(dev, torch.bfloat16),
            )
        )
    return out


def nvenc_works(name: str) -> bool:
    import av

    try:
        ctx = av.CodecContext.create(f"{name}_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
        return True
    except (av.FFmpegError, OSError, ValueError):
        return False


def nvdec_works(name: str, tmp: Path) -> bool:
    """Decode a small clip of this codec with --hwaccel cuda and see the GPU did it."""
    import av
    import numpy as np
    from av.codec.hwaccel import HWAccel

    from .video.source import decoded_on_device

    encoder = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}[name]
    path = tmp / f"probe_{name}.mkv"
    try:
        with av.open(str(path), "w") as c:
            s = c.add_stream(encoder, rate=25)
            s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
            for i in range(2):
                f = av.VideoFrame.from_ndarray(np.full((256, 256, 3), 60 * i, np.uint8), "bgr24")
                f.pts = i
                c.mux(s.encode(f))
            c.mux(s.encode(None))
        with av.open(str(path), hwaccel=HWAccel(device_type="cuda")) as c:
            ctx = c.streams.video[0].codec_context
            next(c.decode(video=0))
            return decoded_on_device(ctx, "cuda")
    except (av.FFmpegError, OSError, ValueError, StopIteration):
        return False


def _codecs(try_gpu: bool) -> list[Codec]:
    import av
    from av.codec.hwaccel import hwdevices_available

    have = set(av.codecs_available)
    cuda_hw = "cuda" in hwdevices_available()
    out = []
    with tempfile.TemporaryDirectory(prefix="rife-doctor-") as tmp:
        for name in CODECS:
            dec = cuda_hw and f"{name}_cuvid" in have
            enc = f"{name}_nvenc" in have
            out.append(
                Codec(
                    name=name,
                    nvdec_built=dec,
                    nvdec_works=nvdec_works(name, Path(tmp)) if dec and try_gpu else None,
                    nvenc_built=enc,
                    nvenc_works=nvenc_works(name) if enc and try_gpu else None,
                )
            )
    return out


def _disk_free(path: Path) -> float | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return round(shutil.disk_usage(p).free / 2**30, 1)
    except OSError:
        return None


def suggestions(r: Report) -> tuple[list[str], list[str]]:
    """The flags worth giving on this machine, and notes on why (or on what is missing)."""
    from .engine.cuda import auto_batch

    flags, notes = [], []
    if r.gpus:
        g = r.gpus[0]
        if g.fp16:
            flags.append("--precision fp16")
        elif g.bf16:
            flags.append("--precision bf16")
        else:
            flags.append("--precision fp32")
            notes.append(f"fp16 and bf16 did not run on {g.name}: fp32 only")
        free = int(g.free_gib * 2**30)
        prec = "fp16" if g.fp16 else "fp32"
        hd = auto_batch(free, 1920, 1088, "v3", 1.0, prec, 2)
        uhd = auto_batch(free, 3840, 2176, "v3", 0.5, prec, 2)
        notes.append(
            f"automatic batch (memory model, two batches in flight): {hd} pairs at 1080p, "
            f"{uhd} at 4K --uhd; halved automatically on an out-of-memory error"
        )
        if hd < 2:
            flags.append("--batch-size 1")
        h264 = next(c for c in r.codecs if c.name == "h264")
        if h264.nvdec_works:
            flags.append("--hwaccel cuda")
        elif h264.nvdec_built:
            notes.append("this FFmpeg has NVDEC but it did not decode here: leave --hwaccel out")
        if any(c.nvenc_works for c in r.codecs):
            best = next(c.name for c in r.codecs if c.nvenc_works)
            flags.append(f"--codec {best}_nvenc")
            notes.append("or keep libx264 with --preset veryfast: x264 fast may not keep up")
        else:
            flags.append("--preset veryfast")
            notes.append("x264's default here (fast) may not keep up with the GPU")
        if len(r.gpus) > 1:
            notes.append(f"{len(r.gpus)} GPUs: one run uses one; run one job per --device cuda:N")
    else:
        fast_bf16 = "amx_bf16" in r.cpu_features or "avx512_bf16" in r.cpu_features
        flags.append(f"--precision {'bf16' if fast_bf16 else 'fp32'}")
        notes.append(
            f"no usable GPU: the CPU runs {r.lanes} lane(s), one pair each (--batch-size "
            f"{r.lanes} is the default)"
        )
        if r.cuda is None:
            notes.append("this PyTorch is a CPU build: on a GPU box install PyPI's CUDA build")
    defaults = [n for n in ("v3.6", "v4.0") if n in r.models and r.models[n] is None]
    if defaults:
        # the two the tool picks on its own (dyadic factors; other timings): worth having
        notes.append(f"not cached: {', '.join(defaults)} (rife models fetch {' '.join(defaults)})")
    if r.disk_free_gib is not None and r.disk_free_gib < 5:
        notes.append(f"only {r.disk_free_gib} GiB free beside the model cache")
    return flags, notes


# The short pipeline bench: a 1080p clip of this many frames, x264 veryfast CRF 18, 2x, with a
# writer queue of a few frames so that its steady rate is the encoder's (see pipeline_bench).
CEILING_SIZE = (1920, 1080)
CEILING_FRAMES = 24
CEILING_QUEUE_FRAMES = 4


def pipeline_ceiling() -> dict | None:
    """A short `rife bench --pipeline` on a synthetic 1080p clip: what this host feeds and what
    its CPU encodes (libx264 veryfast). {"error": why} if it could not run."""
    from .bench import synthetic_frames, write_clip
    from .errors import RifeError
    from .pipeline.ceiling import pipeline_bench

    w, h = CEILING_SIZE
    with tempfile.TemporaryDirectory(prefix="rife-doctor-") as tmp:
        try:
            clip = write_clip(Path(tmp) / "clip.mp4", synthetic_frames(w, h, CEILING_FRAMES))
            return pipeline_bench(
                clip,
                exp=1,
                codec="libx264",
                preset="veryfast",
                crf=18,
                queue_bytes=CEILING_QUEUE_FRAMES * w * h * 3 // 2,
            )
        except (RifeError, OSError, ValueError) as exc:
            return {"error": str(exc)}


def ceiling_notes(p: dict | None, gpus: bool, nvenc: bool) -> list[str]:
    """Which side limits this box, from the short pipeline bench."""
    if not p:
        return []
    if "error" in p:
        return [f"pipeline bench failed: {p['error']}"]
    bare = p["bare_fps_out"]
    ours = p.get("steady_fps_out", p["fps_out"])
    size = f"{CEILING_SIZE[1]}p"
    notes = [f"this CPU encodes at most {bare:.0f} fps at {size} with libx264 veryfast"]
    if ours < 0.8 * bare:
        notes.append(
            f"rife's host side limits this box: it feeds {ours:.0f} fps at {size} (the encoder "
            f"alone {bare:.0f}); rife bench --pipeline INPUT measures a real input"
        )
    else:
        gpu = "a GPU faster than that waits on the encoder" if gpus else "the CPU network is slower"
        notes.append(
            f"the encoder limits the host side ({ours:.0f} fps fed at {size}); {gpu}"
            + ("; --codec h264_nvenc takes encoding off the CPU" if nvenc else "")
        )
    return notes


def collect(try_gpu: bool = True, bench: bool = True) -> Report:
    import av
    import torch

    from .engine.cpus import default_lanes, usable_cores
    from .models.cache import cached_path, rife_home
    from .models.registry import MODELS

    cpu, features = _cpu()
    gpus = _gpus()
    home = rife_home()
    models = {}
    for name in MODELS:
        p = cached_path(name)
        models[name] = str(p) if p.is_file() else None
    r = Report(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        gpus=gpus,
        pyav=av.__version__,
        ffmpeg=".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
        codecs=_codecs(try_gpu and bool(gpus)),
        cpu=cpu,
        cores=usable_cores(),
        cpu_features=features,
        lanes=default_lanes(),
        rife_home=str(home),
        models=models,
        disk_free_gib=_disk_free(home),
        env=env_summary(),
    )
    r.suggest, r.notes = suggestions(r)
    if bench:
        r.pipeline = pipeline_ceiling()
        nvenc = any(c.nvenc_works for c in r.codecs)
        r.notes += ceiling_notes(r.pipeline, bool(gpus), nvenc)
    return r


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def render(r: Report) -> str:
    lines = [
        f"python {r.python}, torch {r.torch}, CUDA {r.cuda or 'none (CPU build)'}"
        + (f", cuDNN {r.cudnn}" if r.cudnn else ""),
    ]
    if r.gpus:
        for g in r.gpus:
            lines.append(
                f"GPU {g.index}: {g.name}, {g.memory_gib} GiB ({g.free_gib} free), compute "
                f"{g.capability}, fp16 {_yes(g.fp16)}, bf16 {_yes(g.bf16)}"
            )
    else:
        lines.append("GPU: none usable by PyTorch")
    lines.append(f"PyAV {r.pyav} (libavcodec {r.ffmpeg}):")
    for c in r.codecs:
        dec = "not built" if not c.nvdec_built else f"built, works {_yes(c.nvdec_works)}"
        enc = "not built" if not c.nvenc_built else f"built, works {_yes(c.nvenc_works)}"
        lines.append(f"  {c.name:5} NVDEC {dec}; NVENC {enc}")
    lines.append(
        f"CPU: {r.cpu}, {r.cores} usable core(s), {r.lanes} lane(s); "
        f"features: {', '.join(r.cpu_features) or 'none of ' + '/'.join(CPU_FEATURES[:5])}"
    )
    cached = [name for name, path in r.models.items() if path]
    others = len(r.models) - len(cached)
    lines.append(
        f"models in {r.rife_home}: {', '.join(cached) or 'none'} cached"
        f"{f'; {others} more named (rife models)' if others else ''}"
    )
    if r.disk_free_gib is not None:
        lines.append(f"disk: {r.disk_free_gib} GiB free beside the model cache")
    if r.env:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in r.env.items()))
    lines.append(f"suggested: rife interpolate {' '.join(r.suggest)} INPUT")
    lines += [f"  - {n}" for n in r.notes]
    return "\n".join(lines)


def env_summary() -> dict:
    """A few environment variables that change what the tool does."""
    keys = ("RIFE_HOME", "RIFE_MODEL", "RIFE_OFFLINE", "CUDA_VISIBLE_DEVICES")
    return {k: os.environ[k] for k in keys if k in os.environ}
