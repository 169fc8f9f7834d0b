"""`rife bench`: model-only and end-to-end speed against a reference-like baseline in the same run.

The baseline is what the reference scripts do: fp32, contiguous (NCHW) tensors, one pair per
forward, decode -> infer -> encode in one loop with no overlap, in a process of its own with the C
library's default allocator (the reference runs as its own script; our allocator setting,
rife_cli.engine.hostmem, is process-wide and would otherwise speed the baseline up too).
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .errors import RifeError
from .pipeline.ceiling import pipeline_bench

__all__ = ["machine", "pipeline_bench", "run_bench"]


@dataclass
class BenchResult:
    size: str
    model: str
    device: str
    precision: str
    batch_size: int
    compile: bool
    pairs_per_s: float
    baseline_pairs_per_s: float
    e2e_fps: float
    baseline_e2e_fps: float
    peak_rss_mib: float
    peak_gpu_mib: float | None
    pad_channels: int = 0  # v3.x inner channels zero-padded to a multiple of this (0: not)
    # Frames each side's end-to-end run wrote: equal, so that fps compare like with like.
    e2e_frames: int = 0
    baseline_e2e_frames: int = 0

    @property
    def label(self) -> str:
        """The model, with its channel padding when there is one."""
        return f"{self.model} pad {self.pad_channels}" if self.pad_channels else self.model

    @property
    def model_ratio(self) -> float:
        return self.pairs_per_s / self.baseline_pairs_per_s

    @property
    def e2e_ratio(self) -> float:
        return self.e2e_fps / self.baseline_e2e_fps

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(model_ratio=round(self.model_ratio, 3), e2e_ratio=round(self.e2e_ratio, 3))
        return d


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def synthetic_frames(w: int, h: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """Textured frames with a moving object and a panning background: real flow to estimate."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    import cv2

    bg = cv2.GaussianBlur(
        cv2.resize(base, (w + 64, h + 64), interpolation=cv2.INTER_CUBIC), (0, 0), 3
    )
    frames = []
    for i in range(n):
        img = bg[(i * 2) % 64 : (i * 2) % 64 + h, (i * 3) % 64 : (i * 3) % 64 + w].copy()
        x = (i * w // (4 * n)) % max(1, w - h // 3)
        cv2.circle(img, (x + h // 6, h // 2), h // 6, (40, 200, 250), -1)
        frames.append(img)
    return frames


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    rate: int | Fraction = 25,
    crf: int = 16,
    preset: str = "veryfast",
) -> Path:
    """BGR frames as an H.264 clip (what the benchmarks and measurement scripts feed the tool)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.codec_context.options = {"crf": str(crf), "preset": preset}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_pairs_per_s(engine, frames: list[np.ndarray], repeats: int) -> float:
    """Midpoints of consecutive pairs, the engine's batch for the size per call; warm-up
    excluded."""
    from .engine import Request

    x = engine.to_tensor(frames)
    n = len(frames) - 1
    h, w = frames[0].shape[:2]
    bs = engine.batch_for(w, h)

    def one_pass():
        for i in range(0, n, bs):
            k = min(bs, n - i)
            # unchecked, as the pipeline makes its batches: no wait for the device per call
            engine.make_unchecked(
                x[i : i + k], x[i + 1 : i + 1 + k], [Request(j, Fraction(1, 2)) for j in range(k)]
            )

    engine.make(x[0:1], x[1:2], [Request(0, Fraction(1, 2))])  # warm-up (and compile)
    _sync(engine.torch_device)
    start = time.perf_counter()
    for _ in range(repeats):
        one_pass()
    _sync(engine.torch_device)
    return n * repeats / (time.perf_counter() - start)


def baseline_e2e(engine, src: Path, out: Path, preset: str = "fast") -> int:
    """The reference's shape of loop: decode a frame, infer the pair, encode both, nothing
    overlapped. Like our video output it ends by holding the last source frame for its interval
    (2N frames from N; the reference itself writes 2N - 1), so that both sides write as many
    frames and frames per second compare like with like."""
    import av

    from .engine import Request

    n_out = 0
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        vs = inp.streams.video[0]
        os_ = dst.add_stream("libx264", rate=vs.average_rate * 2)
        os_.width, os_.height, os_.pix_fmt = (
            vs.codec_context.width,
            vs.codec_context.height,
            "yuv420p",
        )
        os_.codec_context.options = {"preset": preset}
        prev = None
        for frame in inp.decode(vs):
            img = frame.to_ndarray(format="bgr24")
            if prev is not None:
                h, w = img.shape[:2]
                x = engine.to_tensor([prev, img])
                mid = engine.to_arrays(
                    engine.make(x[0:1], x[1:2], [Request(0, Fraction(1, 2))])[0], h, w
                )[0]
                for im in (prev, mid):
                    f = av.VideoFrame.from_ndarray(im, format="bgr24")
                    f.pts = n_out
                    dst.mux(os_.encode(f))
                    n_out += 1
            prev = img
        for _ in range(2):  # the last source frame, and the same frame held for its interval
            f = av.VideoFrame.from_ndarray(prev, format="bgr24")
            f.pts = n_out
            dst.mux(os_.encode(f))
            n_out += 1
        dst.mux(os_.encode(None))
    return n_out


def baseline_engine(model, device="cpu", scale=1.0, offline=False):
    """The reference's arithmetic and layout: fp32, NCHW, native operators, one pair per forward
    on all cores (no lanes), the mirrored v3.x block calls one after the other."""
    from .engine import Interpolator

    return Interpolator(
        model,
        device=device,
        precision="fp32",
        batch_size=1,
        reference_like=True,
        lanes=1,
        scale=scale,
        offline=offline,
    )


def baseline_worker() -> None:
    """Child-process side of `measure_baseline`: a spec as JSON on stdin, results on stdout."""
    spec = json.load(sys.stdin)
    base = baseline_engine(spec["model"], spec["device"], spec["scale"], spec["offline"])
    imgs = synthetic_frames(spec["w"], spec["h"], spec["frames"])
    pairs = model_pairs_per_s(base, imgs, spec["repeats"])
    start = time.perf_counter()
    n = baseline_e2e(base, Path(spec["src"]), Path(spec["out"]))
    fps = n / (time.perf_counter() - start)
    json.dump({"pairs_per_s": pairs, "e2e_fps": fps, "frames": n}, sys.stdout)


def measure_baseline(spec: dict) -> tuple[float, float, int]:
    """One baseline round in a fresh interpreter: (model pairs/s, end-to-end fps, frames)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from rife_cli.bench import baseline_worker; baseline_worker()"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RifeError(f"the baseline process failed (exit {proc.returncode}): {last}")
    out = json.loads(proc.stdout)
    return out["pairs_per_s"], out["e2e_fps"], out["frames"]


def run_bench(
    model: str | None,
    size: tuple[int, int],
    precision: str,
    batch_size: int,
    compile: bool,
    device: str,
    frames: int,
    repeats: int = 1,
    rounds: int = 2,
    scale: float = 1.0,
    offline: bool = False,
    pad_channels: int = 0,
    log=print,
    cuda_graphs: bool = False,
) -> BenchResult:
    from .engine import Interpolator
    from .pipeline.run import interpolate_video

    w, h = size
    ours = Interpolator(
        model,
        device=device,
        precision=precision,
        batch_size=batch_size,
        compile=compile,
        scale=scale,
        offline=offline,
        pad_channels=pad_channels,
        cuda_graphs=cuda_graphs,
    )
    imgs = synthetic_frames(w, h, frames)
    if ours.torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ours.torch_device)

    # Alternate baseline and ours so that drift in the machine's speed hits both alike.
    m_ours, m_base, e_ours, e_base = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="rife-bench-") as tmp:
        src = write_clip(Path(tmp) / "clip.mp4", imgs)
        spec = {
            "model": str(ours.source.path),
            "device": str(ours.torch_device),
            "scale": scale,
            "offline": offline,
            "w": w,
            "h": h,
            "frames": frames,
            "repeats": repeats,
            "src": str(src),
            "out": str(Path(tmp) / "base.mp4"),
        }
        for r in range(rounds):
            pairs, fps, base_frames = measure_baseline(spec)
            m_base.append(pairs)
            e_base.append(fps)
            m_ours.append(model_pairs_per_s(ours, imgs, repeats))
            start = time.perf_counter()
            # Scene detection off: every pair is interpolated, as in the baseline (same work).
            s = interpolate_video(
                src,
                Path(tmp) / "ours.mp4",
                engine_factory=lambda need: ours,
                exp=1,
                force=True,
                scene_threshold=0,
            )
            e_ours.append(s.frames_out / (time.perf_counter() - start))
            our_frames = s.frames_out
            log(
                f"round {r + 1}/{rounds}: model {m_base[-1]:.3f} -> {m_ours[-1]:.3f} pairs/s, "
                f"end-to-end {e_base[-1]:.3f} -> {e_ours[-1]:.3f} fps"
            )
    ours.close()
    gpu = None
    if ours.torch_device.type == "cuda":
        gpu = torch.cuda.max_memory_allocated(ours.torch_device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return BenchResult(
        size=f"{w}x{h}",
        model=ours.source.label,
        device=str(ours.torch_device),
        precision=ours.precision,
        batch_size=ours.batch_for(w, h),
        compile=compile,
        pairs_per_s=float(np.median(m_ours)),
        baseline_pairs_per_s=float(np.median(m_base)),
        e2e_fps=float(np.median(e_ours)),
        baseline_e2e_fps=float(np.median(e_base)),
        peak_rss_mib=rss,
        peak_gpu_mib=gpu,
        pad_channels=pad_channels,
        e2e_frames=our_frames,
        baseline_e2e_frames=base_frames,
    )
