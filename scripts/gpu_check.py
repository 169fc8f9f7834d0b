#!/usr/bin/env python3
"""One prepared check of the CUDA path for a lent GPU: `python scripts/gpu_check.py --out DIR`.

Made for a 15-minute window on a bare machine (scripts/device_check.sh installs the kit and runs
this): it runs from the tree without installing it, touches no network when the kit's model cache
is set (RIFE_OFFLINE), and writes each row to DIR/gpu_check.json and the table to
DIR/gpu_check.md (and stdout) as soon as the row is done, so that a run cut short still returns
what it measured. Every check has a time budget: one that would overrun the run's budget (7.5
minutes on a GPU) is skipped with a row saying so, the most telling checks first. What the GPU
lacks (NVENC on an A100/H100/H200, NVDEC for a codec) is reported as a row, not a failure.

Rows: the machine and its codecs; goldens in fp32 (TF32 off), fp16 and bf16 against the CPU's
fp32 frames (made in a child process, so that the CPU engine's allocator setting stays out of
this one); pans against a known middle; two batches in flight against one and CUDA graphs
against compiled (deterministic algorithms: identical); model-only pairs/s at 1080p and 4K
(--uhd) for v3.6, v4.0, v4.6 and v4.26 (the last two with the golden rule's weights), eager,
compiled and graphs, each timed after warm-up at a fixed shape; the pipeline's ceiling (rife
bench --pipeline) and end-to-end fps with x264 and NVENC against the reference-like loop; the
memory model against the measured peak, and back-offs; --devices cuda:0 against the plain run;
NVDEC against software decoding.

`--device cpu` runs the same checks at small sizes (GPU-only rows say n/a), so that the script
cannot rot: tests/test_gpu_check.py and tests/test_device_check.py run it. Exit status 1 when a
check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run from a plain copy of the tree: the package and the tests' helpers without installing.
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from unittest import mock

import numpy as np

GOLDEN = ROOT / "tests" / "data" / "golden"
PAIRS = ("I0", "I1", "I2")
HALF = Fraction(1, 2)
REAL_MODELS = ("v3.6", "v4.0")  # the kit's weights
GENERATED = ("4.6", "4.26")  # the golden rule's weights: their speed, not their pictures
SPEED_MODELS = REAL_MODELS + tuple(f"v{v}" for v in GENERATED)
# Targets of issue 13 (H100/H200-class, 1080p, fp16).
TARGET_PAIRS = {"v3.6": 200.0, "v4.0": 500.0}
TARGET_E2E = 4.0
TARGET_FP16_DB = 0.2
GPU_BUDGET_S = 450.0  # of the 15-minute window: the machine's start and the transfers take the rest
CPU_BUDGET_S = 900.0


@dataclass
class Row:
    check: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: information only (or not applicable here)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Sizes:
    model: tuple[int, int]  # model-only speed, 1080p
    uhd: tuple[int, int]  # model-only speed and the memory check, 4K with --uhd
    clip: tuple[int, int]  # end-to-end and pipeline checks
    clip_frames: int
    graphs: tuple[int, int]
    timed_s: float  # how long each speed row times (after its warm-up)


GPU_SIZES = Sizes((1920, 1088), (3840, 2160), (1920, 1080), 48, (640, 352), 2.0)
CPU_SIZES = Sizes((256, 160), (512, 288), (192, 128), 6, (128, 96), 0.3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2f}"


def _finite(v):
    """JSON has no infinity: identical frames' PSNR is written as "inf"."""
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return v


def decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def golden_frames(pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    import cv2

    return [tuple(cv2.imread(str(GOLDEN / p / f"frame{i}.png")) for i in (0, 1)) for p in pairs]


def cpu_reference(out: Path, pairs: list[str]) -> None:
    """Child-process side: the CPU's fp32 middles of the golden pairs for the real models."""
    from rife_cli.engine import Interpolator

    made = {}
    for model in REAL_MODELS:
        eng = Interpolator(model, device="cpu", precision="fp32")
        for pair, (a, b) in zip(pairs, golden_frames(pairs)):
            (made[f"{model}/{pair}"],) = eng.interpolate(a, b, [HALF])
        eng.close()
    np.savez(out, **made)


@contextlib.contextmanager
def deterministic(torch):
    """cuDNN's fixed algorithms, no benchmark search, no TF32: two runs of the same work give
    the same bits, so that "identical" means identical and not "the same algorithm was picked"."""
    cudnn = torch.backends.cudnn
    old = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32)
    old_mm = torch.backends.cuda.matmul.allow_tf32
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = False, True, False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = old
        torch.backends.cuda.matmul.allow_tf32 = old_mm


class Report:
    """The rows so far, on stdout, in OUT/gpu_check.md and in OUT/gpu_check.json after each."""

    def __init__(self, out: Path, head: dict):
        self.out = out
        self.head = head
        self.rows: list[Row] = []
        self.started = time.perf_counter()
        self.stdout = sys.stdout
        out.mkdir(parents=True, exist_ok=True)
        self.md = out / "gpu_check.md"
        self._line(f"Machine: {head['machine']}; device {head['device']}\n", fresh=True)
        self._line("| check | result | target | ok | s |")
        self._line("| --- | --- | --- | --- | --- |")
        self._save(done=False)

    def _line(self, text: str, fresh: bool = False) -> None:
        print(text, file=self.stdout, flush=True)
        with open(self.md, "w" if fresh else "a") as f:
            f.write(text + "\n")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ok = "-" if row.ok is None else ("yes" if row.ok else "NO")
        self._line(f"| {row.check} | {row.value} | {row.target} | {ok} | {row.seconds:.0f} |")
        self._save(done=False)

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def _save(self, done: bool) -> None:
        report = {
            **self.head,
            "seconds": round(time.perf_counter() - self.started, 1),
            "done": done,
            "ok": self.ok,
            "rows": [_finite(asdict(r)) for r in self.rows],
        }
        part = self.out / "gpu_check.json.part"
        part.write_text(json.dumps(report, indent=1, default=str))
        os.replace(part, self.out / "gpu_check.json")

    def finish(self) -> None:
        self._save(done=True)
        self._line(f"\n{len(self.rows)} rows in {time.perf_counter() - self.started:.0f} s")


class GpuCheck:
    def __init__(self, device: str, tmp: Path, report: Report, budget_s: float):
        import torch

        from rife_cli.engine import pick_device

        self.torch = torch
        self.dev = pick_device(device)
        self.cuda = self.dev.type == "cuda"
        self.sizes = GPU_SIZES if self.cuda else CPU_SIZES
        self.tmp = tmp
        self.report = report
        self.deadline = time.perf_counter() + budget_s
        self.budget_s = budget_s
        self.pairs = PAIRS if self.cuda else PAIRS[:1]  # the CPU run: one golden pair
        self.engines: list = []
        self._clip: Path | None = None
        self._reference: Path | None = None
        self._row_started = time.perf_counter()

    # ----- helpers
    def add(self, check: str, value: str, target: str = "", ok=None, data=None) -> None:
        now = time.perf_counter()
        self.report.add(Row(check, value, target, ok, data or {}, now - self._row_started))
        self._row_started = now

    def engine(self, model: str, precision: str = "auto", **kw):
        from rife_cli.engine import Interpolator

        if model.removeprefix("v") in GENERATED:
            from weights_rule import generated_network

            kw["network"] = generated_network(model.removeprefix("v"))
        eng = Interpolator(model, device=str(self.dev), precision=precision, **kw)
        self.engines.append(eng)
        return eng

    def close_engines(self) -> None:
        for e in self.engines:
            e.close()  # CPU lanes: no idle threads of one check beside the next one's work
        self.engines.clear()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.dev)

    def halves(self) -> list[str]:
        """The half precisions to check: fp16 and bf16 on CUDA; bf16 on CPUs fast at it."""
        from rife_cli.engine import cpu_has_fast_bf16

        if self.cuda:
            return ["fp16", "bf16"]
        return ["bf16"] if cpu_has_fast_bf16() else []

    def clip(self) -> Path:
        if self._clip is None:
            from rife_cli.bench import synthetic_frames, write_clip

            w, h = self.sizes.clip
            self._clip = write_clip(
                self.tmp / "clip.mp4", synthetic_frames(w, h, self.sizes.clip_frames)
            )
        return self._clip

    def run_pipeline(self, eng, out: Path, **opts):
        from rife_cli.pipeline import interpolate_video

        start = time.perf_counter()
        s = interpolate_video(
            self.clip(),
            out,
            engine_factory=lambda need: eng,
            exp=1,
            force=True,
            scene_threshold=0,
            **opts,
        )
        return s, time.perf_counter() - start

    def reference(self) -> dict[str, np.ndarray]:
        """The CPU's frames, made once in a child process (its allocator settings stay there)."""
        if self._reference is None:
            path = self.tmp / "cpu_reference.npz"
            cmd = [sys.executable, __file__, "--cpu-reference", str(path), *self.pairs]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"the CPU reference process failed: {last}")
            self._reference = path
        with np.load(self._reference) as z:
            return {k: z[k] for k in z.files}

    def timed_pairs_per_s(self, eng, w: int, h: int) -> tuple[float, int]:
        """Pairs/s of full batches at one fixed shape: warm-up first (cuDNN's algorithm search,
        compilation, graph capture happen there), then batches timed for sizes.timed_s."""
        from rife_cli.bench import synthetic_frames
        from rife_cli.engine import Request

        batch = eng.batch_for(w, h)
        frames = synthetic_frames(w, h, batch + 1)
        x = eng.to_tensor(frames)
        reqs = [Request(j, HALF) for j in range(batch)]
        with eng.stream():
            a, b = x[:batch], x[1 : batch + 1]
            for _ in range(3 if self.cuda else 1):
                eng.make(a, b, reqs)
            self.sync()
            n = 0
            start = time.perf_counter()
            while True:
                eng.make(a, b, reqs)
                n += 1
                if n % 4 == 0 or not self.cuda:
                    self.sync()
                    if time.perf_counter() - start >= self.sizes.timed_s:
                        break
        return n * batch / (time.perf_counter() - start), batch

    # ----- the checks
    def machine(self) -> None:
        """What this machine has and lacks: the GPU, and NVENC/NVDEC per codec."""
        import av

        from rife_cli.doctor import CODECS, nvdec_works, nvenc_works

        torch = self.torch
        gpu = torch.cuda.get_device_name(self.dev) if self.cuda else "none (CPU run)"
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        enc, dec = [], []
        if self.cuda:
            enc = [c for c in CODECS if nvenc_works(c)]
            dec = [c for c in CODECS if nvdec_works(c, self.tmp)]
        lacks = [f"NVENC {c}" for c in CODECS if c not in enc]
        lacks += [f"NVDEC {c}" for c in CODECS if c not in dec]
        self.add(
            "machine",
            f"{gpu}; torch {torch.__version__}, cuDNN {cudnn}, PyAV {av.__version__}; "
            f"NVENC: {', '.join(enc) or 'none'}; NVDEC: {', '.join(dec) or 'none'}",
            "",
            None,
            {"gpu": gpu, "nvenc": enc, "nvdec": dec, "lacks": lacks},
        )

    def golden(self) -> None:
        """Each precision against the CPU's fp32 frames; fp32 with TF32 off (cuDNN and cuBLAS)."""
        torch = self.torch
        ref = self.reference()
        frames = golden_frames(self.pairs)
        for model in REAL_MODELS:
            for precision in ["fp32", *self.halves()]:
                eng = self.engine(model, precision)
                worst = math.inf
                ctx = deterministic(torch) if precision == "fp32" else contextlib.nullcontext()
                with ctx:
                    for pair, (a, b) in zip(self.pairs, frames):
                        (got,) = eng.interpolate(a, b, [HALF])
                        worst = min(worst, psnr(got, ref[f"{model}/{pair}"]))
                floor = 50.0 if precision == "fp32" else 40.0
                name = "fp32 (TF32 off)" if precision == "fp32" and self.cuda else precision
                self.add(
                    f"golden {model} {name} vs CPU fp32",
                    f"{db(worst)} dB (worst of {len(self.pairs)})",
                    f">= {floor:.0f} dB",
                    worst >= floor,
                    {"db": worst, "fallbacks": eng.fp32_fallbacks},
                )
            self.close_engines()

    def pans(self) -> None:
        """Half precision's quality against fp32's on pans with a known middle."""
        if not self.halves():
            self.add("pans half - fp32 PSNR vs truth", "n/a: no fast half precision here")
        for half in self.halves():
            for model in REAL_MODELS:
                gains = []
                for precision in ("fp32", half):
                    eng = self.engine(model, precision)
                    total = 0.0
                    for a0, _ in golden_frames(self.pairs):
                        w = a0.shape[1] - 6
                        a, mid, b = (a0[:, x : x + w] for x in (0, 3, 6))
                        (got,) = eng.interpolate(a, b, [HALF])
                        total += psnr(got[:, 6:-6], mid[:, 6:-6])
                    gains.append(total / len(self.pairs))
                delta = gains[1] - gains[0]
                self.add(
                    f"pans {model} {half} - fp32 PSNR vs truth",
                    f"{delta:+.3f} dB ({gains[1]:.2f} vs {gains[0]:.2f})",
                    f"within {TARGET_FP16_DB} dB",
                    abs(delta) <= TARGET_FP16_DB,
                    {"half_db": gains[1], "fp32_db": gains[0]},
                )
                self.close_engines()

    def two_batches(self) -> None:
        eng = self.engine("v3.6")
        depth = eng.concurrent_batches
        outs = []
        with deterministic(self.torch):
            for d in (1, depth):
                with mock.patch.object(
                    type(eng.backend), "concurrent_batches", property(lambda self, d=d: d)
                ):
                    self.run_pipeline(eng, self.tmp / f"depth{d}.mkv", codec="ffv1")
                outs.append(decode(self.tmp / f"depth{d}.mkv"))
        same = len(outs[0]) == len(outs[1]) and all(np.array_equal(x, y) for x, y in zip(*outs))
        self.add(
            "two batches in flight vs one (deterministic algorithms)",
            f"{'identical' if same else 'DIFFERENT'} ({len(outs[0])} frames, {depth} in flight)",
            "identical",
            same,
            {"in_flight": depth},
        )

    def speed(self, uhd: bool, mode: str, gpu_s: float) -> Callable[[], None]:
        """Pairs/s of each speed model in one mode; gpu_s: what the four may take on a GPU."""

        def check() -> None:
            w, h = self.sizes.uhd if uhd else self.sizes.model
            kw = {"scale": 0.5} if uhd else {}
            kw.update({"eager": {}, "compiled": {"compile": True}}.get(mode, {}))
            if mode == "graphs":
                kw["cuda_graphs"] = True
            if mode != "eager" and not self.cuda:
                self.add(f"model pairs/s {mode} {'4K --uhd' if uhd else '1080p'}", "n/a on the CPU")
                return
            for model in SPEED_MODELS:
                if self.cuda and not self.has_time(gpu_s / len(SPEED_MODELS)):
                    self.skip(f"model pairs/s {model} {mode} {w}x{h}")
                    continue
                eng = self.engine(model, **kw)
                pairs, batch = self.timed_pairs_per_s(eng, w, h)
                target = TARGET_PAIRS.get(model) if self.cuda and not uhd else None
                self.add(
                    f"model pairs/s {model} {mode} {eng.precision} {w}x{h}"
                    + (" --uhd" if uhd else ""),
                    f"{pairs:.1f} (batch {batch})",
                    f">= {target:.0f}" if target else "",
                    pairs >= target if target else None,
                    {"pairs_per_s": pairs, "batch": batch, "mode": mode, "model": model},
                )
                self.close_engines()

        check.__name__ = f"speed {mode} {'uhd' if uhd else '1080p'}"
        return check

    def graphs_identical(self) -> None:
        if not self.cuda:
            self.add("CUDA graphs vs compiled", "n/a on the CPU")
            return
        from rife_cli.bench import synthetic_frames

        w, h = self.sizes.graphs
        f = synthetic_frames(w, h, 4)
        made = {}
        with deterministic(self.torch):
            for name, kw in (
                ("eager", {}),
                ("compiled", {"compile": True}),
                ("graphs", {"cuda_graphs": True}),
            ):
                eng = self.engine("v3.6", "fp16", batch_size=2, **kw)
                made[name] = [eng.interpolate(f[i], f[i + 1], [HALF])[0] for i in range(3)]
        same = all(np.array_equal(x, y) for x, y in zip(made["graphs"], made["compiled"]))
        worst = min(psnr(x, y) for x, y in zip(made["compiled"], made["eager"]))
        self.add(
            "CUDA graphs vs compiled (v3.6 fp16, deterministic algorithms)",
            "identical" if same else "DIFFERENT",
            "identical",
            same,
        )
        self.add(
            "compiled vs eager (v3.6 fp16; other kernels: a tolerance)",
            f"{db(worst)} dB",
            ">= 40 dB",
            worst >= 40,
        )

    def nvdec(self) -> None:
        from rife_cli.doctor import nvdec_works

        if not self.cuda or not nvdec_works("h264", self.tmp):
            why = "n/a on the CPU" if not self.cuda else "n/a: NVDEC does not decode h264 here"
            self.add("NVDEC vs software decoding", why)
            return
        from rife_cli.video import nvdec as handover

        eng = self.engine("v3.6")
        outs = {}
        # NVDEC's pictures reach the engine on the GPU (rife_cli.video.nvdec): counted here, and
        # any fallback to host memory is one of the warnings
        handed, warned, real = [], [], handover.device_samples
        handover.device_samples = lambda frame, device: handed.append(1) or real(frame, device)
        try:
            for hw in (None, "cuda"):
                s, _ = self.run_pipeline(
                    eng, self.tmp / f"hw{hw}.mkv", codec="ffv1", hwaccel=hw, warn=warned.append
                )
                outs[hw] = (s.hwaccel, decode(self.tmp / f"hw{hw}.mkv"))
        finally:
            handover.device_samples = real
        sw, hw = outs[None][1], outs["cuda"][1]
        passed = all(np.array_equal(x, y) for x, y in zip(sw[0::2], hw[0::2]))
        made = max(
            int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(sw[1::2], hw[1::2])
        )
        fell_back = [w for w in warned if "cannot be handed" in w]
        ok = outs["cuda"][0] == "cuda" and len(sw) == len(hw) and passed and made <= 2
        ok = ok and len(handed) == len(sw) // 2 and not fell_back
        self.add(
            "NVDEC vs software decoding",
            f"decoded by {outs['cuda'][0] or 'software'}; {len(handed)} of {len(sw) // 2} "
            f"pictures handed over on the GPU{' (' + fell_back[0] + ')' if fell_back else ''}; "
            f"pass-through {'identical' if passed else 'DIFFERENT'}, made frames within {made} "
            "levels",
            "cuda, all, identical, <= 2",
            ok,
            {"decoded_by": outs["cuda"][0], "made_max_diff": made, "handed_over": len(handed)},
        )

    def pipeline_ceiling(self) -> None:
        from rife_cli import bench

        run = getattr(bench, "pipeline_bench", None)
        if run is None:
            self.add(
                "pipeline ceiling (rife bench --pipeline)",
                "skipped: rife_cli.bench.pipeline_bench is not in this tree yet",
            )
            return
        w, h = self.sizes.clip
        import inspect

        params = inspect.signature(run).parameters
        wanted = {"device": str(self.dev), "exp": 1}
        r = run(self.clip(), **{k: v for k, v in wanted.items() if k in params})
        bare = r.get("bare_fps_out")
        self.add(
            f"pipeline ceiling {w}x{h} 2x (no network)",
            f"{r['fps_out']:.1f} fps out, {r['cpu_s_per_frame'] * 1e3:.1f} ms CPU per frame"
            + (f"; bare decode+encode {bare:.1f} fps" if bare else ""),
            "",
            None,
            {k: r.get(k) for k in ("fps_out", "frames_out", "seconds", "cpu_s_per_frame")}
            | {"bare_fps_out": bare},
        )

    def end_to_end(self) -> None:
        from rife_cli.bench import baseline_e2e, baseline_engine
        from rife_cli.doctor import nvenc_works

        base_eng = baseline_engine("v3.6", str(self.dev))
        base_eng.interpolate(*golden_frames(self.pairs[:1])[0], [HALF])  # load and warm up
        start = time.perf_counter()
        n_base = baseline_e2e(base_eng, self.clip(), self.tmp / "base.mp4", preset="veryfast")
        base_fps = n_base / (time.perf_counter() - start)
        base_eng.close()
        eng = self.engine("v3.6")
        encoders = [("x264 veryfast", {"preset": "veryfast"})]
        if self.cuda and nvenc_works("h264"):
            encoders.append(("NVENC h264", {"codec": "h264_nvenc"}))
        elif self.cuda:
            self.add("end-to-end NVENC h264", "n/a: this GPU has no NVENC (A100/H100/H200)")
        w, h = self.sizes.clip
        self.run_pipeline(eng, self.tmp / "warm.mp4", preset="veryfast")  # warm-up
        for name, opts in encoders:
            s, secs = self.run_pipeline(eng, self.tmp / "ours.mp4", **opts)
            fps = s.frames_out / secs
            ratio = fps / base_fps
            self.add(
                f"end-to-end {w}x{h} 2x v3.6, {name}",
                f"{fps:.1f} fps (baseline x264 veryfast {base_fps:.2f}, {ratio:.2f}x; "
                f"{s.frames_out} vs {n_base} frames)",
                f">= {TARGET_E2E:.0f}x" if self.cuda else "equal frame counts",
                (ratio >= TARGET_E2E if self.cuda else True) and s.frames_out == n_base,
                {"fps": fps, "baseline_fps": base_fps, "frames": s.frames_out},
            )

    def devices(self) -> None:
        """--devices with this one device (a worker process) against the plain run: the same
        frames, and what the worker costs."""
        from rife_cli.cli import engine_options
        from rife_cli.scale.devices import interpolate_sharded

        dev = "cuda:0" if self.cuda else "cpu"
        opts = {"exp": 1, "force": True, "scene_threshold": 0, "codec": "ffv1"}
        eng = self.engine("v3.6")
        self.run_pipeline(eng, self.tmp / "plain.mkv", codec="ffv1")  # warm-up
        plain, plain_s = self.run_pipeline(eng, self.tmp / "plain.mkv", codec="ffv1")
        self.close_engines()
        engine = engine_options(
            model="v3.6", scale=1.0, uhd=False, device=dev, precision="auto", offline=False
        )
        del engine["device"]  # each worker's own
        start = time.perf_counter()
        sharded = interpolate_sharded(self.clip(), self.tmp / "sharded.mkv", [dev], engine, opts)
        sharded_s = time.perf_counter() - start
        a, b = decode(self.tmp / "plain.mkv"), decode(self.tmp / "sharded.mkv")
        same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
        self.add(
            f"--devices {dev} vs plain run",
            f"{'identical' if same else 'DIFFERENT'} frames ({len(b)} vs {len(a)}); "
            f"{sharded.frames_out / sharded_s:.1f} fps (worker start included) vs "
            f"{plain.frames_out / plain_s:.1f}",
            "identical",
            same,
            {"frames": len(b), "sharded_s": sharded_s, "plain_s": plain_s},
        )

    def memory(self) -> None:
        """The memory model against the peak measured at 4K --uhd, a batch it chose."""
        from rife_cli.bench import synthetic_frames
        from rife_cli.engine import Request
        from rife_cli.engine.cuda import pair_bytes

        w, h = self.sizes.uhd
        torch = self.torch
        for model in REAL_MODELS:
            eng = self.engine(model, scale=0.5)
            batch = eng.batch_for(w, h)
            frames = synthetic_frames(w, h, min(batch, 8) + 1)
            n = len(frames) - 1
            if self.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.dev)
                before = torch.cuda.memory_allocated(self.dev)
            with eng.stream():
                x = eng.to_tensor(frames)
                outs = eng.make(x[:n], x[1:], [Request(i, HALF) for i in range(n)])
                bad = sum(int(not bool(torch.isfinite(o).all())) for o in outs)
            self.sync()
            if self.cuda:
                peak = (torch.cuda.max_memory_allocated(self.dev) - before) / 2**30
                where = "peak GPU"
            else:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                where = "peak RSS (process)"
            model_gib = pair_bytes(w, h, eng.memory_group, 0.5, eng.precision) * n / 2**30
            self.add(
                f"memory {w}x{h} --uhd {model} {eng.precision}, {n} pairs",
                f"{where} {peak:.2f} GiB, model {model_gib:.2f} GiB ({batch} a batch); "
                f"NaN/Inf frames {bad}, fp32 redone {eng.fp32_fallbacks}",
                "0 NaN/Inf" + (", peak <= model" if self.cuda else ""),
                bad == 0 and (peak <= model_gib if self.cuda else True),
                {"peak_gib": peak, "nonfinite": bad, "batch": batch, "model_gib": model_gib},
            )
            self.close_engines()

    def backoffs(self) -> None:
        total = sum(r.data.get("oom_backoffs", 0) for r in self.report.rows)
        total += sum(e.oom_backoffs for e in self.engines)
        self.add("out-of-memory back-offs in this run", str(total), "0", total == 0, {"oom": total})

    # ----- the plan: the most telling first; (check, seconds it may take on a GPU, on the CPU)
    def plan(self) -> list[tuple[Callable[[], None], float, float]]:
        return [
            (self.machine, 20, 5),
            (self.golden, 40, 60),
            (self.speed(False, "eager", 40), 40, 30),
            (self.speed(True, "eager", 50), 50, 40),
            (self.end_to_end, 40, 40),
            (self.pipeline_ceiling, 30, 30),
            (self.memory, 25, 30),
            (self.two_batches, 20, 30),
            (self.nvdec, 20, 5),
            (self.devices, 40, 60),
            (self.pans, 20, 30),
            (self.graphs_identical, 90, 5),
            (self.speed(False, "compiled", 160), 40, 5),
            (self.speed(False, "graphs", 160), 40, 5),
            (self.backoffs, 1, 1),
        ]

    def has_time(self, seconds: float) -> bool:
        return time.perf_counter() + seconds <= self.deadline

    def skip(self, name: str) -> None:
        left = max(0.0, self.deadline - time.perf_counter())
        self.add(name, f"skipped: would overrun ({left:.0f} s left of {self.budget_s:.0f} s)")

    def run(self) -> None:
        for check, gpu_s, cpu_s in self.plan():
            name = check.__name__
            self._row_started = time.perf_counter()
            if not self.has_time(gpu_s if self.cuda else cpu_s):
                self.skip(name)
                continue
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - one failed check must not hide the others
                traceback.print_exc()
                self.add(name, f"ERROR {type(exc).__name__}: {exc}"[:300], "", False)
            self.close_engines()
            print(f"  {name}: {time.perf_counter() - self._row_started:.1f} s", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (small sizes)")
    ap.add_argument("--out", type=Path, default=Path("output/gpu-check"), help="folder for rows")
    ap.add_argument("--budget", type=float, help="seconds for all checks (GPU 450, CPU 900)")
    ap.add_argument("--cpu-reference", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("pairs", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_reference:
        cpu_reference(args.cpu_reference, args.pairs)
        return 0
    import torch

    from rife_cli.bench import machine
    from rife_cli.engine import pick_device

    dev = pick_device(args.device)
    budget = args.budget or (GPU_BUDGET_S if dev.type == "cuda" else CPU_BUDGET_S)
    head = {"machine": machine(), "device": str(dev), "torch": torch.__version__}
    report = Report(args.out, head)
    with tempfile.TemporaryDirectory(prefix="rife-gpu-check-") as tmp:
        check = GpuCheck(args.device, Path(tmp), report, budget)
        with contextlib.redirect_stdout(sys.stderr):
            check.run()
    report.finish()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
