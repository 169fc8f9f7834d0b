#!/usr/bin/env python3
"""One prepared check of the CUDA path for a lent GPU: `python scripts/gpu_check.py [--json PATH]`.

Prints one table and writes it as JSON (default gpu_check.json): golden pairs on the device in
fp16 and fp32 against the CPU's fp32 frames (dB) and fp16's quality against fp32's on pans with a
known middle; two batches in flight against one at a time (identical frames); CUDA graphs against
the compiled network without them (identical); NVDEC against software decoding (identical
pass-through frames, made frames within 2 levels); model-only pairs/s at 1920x1088 for v3.6 and
v4.0 with the automatic batch against the reference-like baseline; end-to-end 1080p 2x with x264
veryfast (and NVENC where it works) against the reference-like loop, equal frame counts; 4K --uhd
peak GPU memory and NaN/Inf count; the batch the memory model chose and whether it backed off.
Sized to run in under 6 minutes on one H100/H200-class GPU.

`--device cpu` runs the same checks at small sizes in about a minute (GPU-only rows say n/a), so
that the script cannot rot: tests/test_gpu_check.py runs it. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
PAIRS = ("I0", "I1", "I2")
HALF = Fraction(1, 2)
# Targets of issue 13 (H100/H200-class, 1080p, fp16).
TARGET_PAIRS = {"v3.6": 200.0, "v4.0": 500.0}
TARGET_E2E = 4.0
TARGET_FP16_DB = 0.2


@dataclass
class Row:
    check: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: information only (or not applicable here)
    data: dict = field(default_factory=dict)


@dataclass
class Sizes:
    model: tuple[int, int]  # model-only speed
    clip: tuple[int, int]  # end-to-end and pipeline checks
    clip_frames: int
    uhd: tuple[int, int]  # the --uhd memory check
    graphs: tuple[int, int]


GPU_SIZES = Sizes((1920, 1088), (1920, 1080), 48, (3840, 2160), (640, 352))
CPU_SIZES = Sizes((256, 160), (192, 128), 6, (512, 288), (128, 96))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2f}"


def decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


class GpuCheck:
    def __init__(self, device: str, tmp: Path, skip_graphs: bool):
        import torch

        from rife_cli.engine import pick_device

        self.torch = torch
        self.dev = pick_device(device)
        self.cuda = self.dev.type == "cuda"
        self.sizes = GPU_SIZES if self.cuda else CPU_SIZES
        self.tmp = tmp
        self.skip_graphs = skip_graphs
        self.pairs = PAIRS if self.cuda else PAIRS[:1]  # the CPU run: one golden pair
        self.rows: list[Row] = []
        self.engines: list = []
        self._clip: Path | None = None

    # ----- helpers
    def engine(self, model: str, precision: str = "auto", **kw):
        from rife_cli.engine import Interpolator

        eng = Interpolator(model, device=str(self.dev), precision=precision, **kw)
        self.engines.append(eng)
        return eng

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.dev)

    def half(self) -> str:
        """The half precision this device runs: fp16 on CUDA; bf16 on CPUs fast at it."""
        from rife_cli.engine import cpu_has_fast_bf16

        if self.cuda:
            return "fp16"
        return "bf16" if cpu_has_fast_bf16() else ""

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

    # ----- the checks
    def golden(self) -> None:
        import cv2

        from rife_cli.engine import Interpolator

        precisions = ["fp32"] + ([self.half()] if self.half() else [])
        for model in ("v3.6", "v4.0"):
            cpu = Interpolator(model, device="cpu", precision="fp32")
            for precision in precisions:
                eng = self.engine(model, precision)
                worst = math.inf
                for pair in self.pairs:
                    a, b = (cv2.imread(str(GOLDEN / pair / f"frame{i}.png")) for i in (0, 1))
                    (want,) = cpu.interpolate(a, b, [HALF])
                    (got,) = eng.interpolate(a, b, [HALF])
                    worst = min(worst, psnr(got, want))
                floor = 40.0 if precision != "fp32" else 50.0
                self.rows.append(
                    Row(
                        f"golden {model} {precision} vs CPU fp32",
                        f"{db(worst)} dB (worst of {len(self.pairs)})",
                        f">= {floor:.0f} dB",
                        worst >= floor,
                        {"db": worst, "fallbacks": eng.fp32_fallbacks},
                    )
                )
            cpu.close()
        # Quality against a known middle frame: pans over the golden frames.
        if self.half():
            for model in ("v3.6", "v4.0"):
                gains = []
                for precision in ("fp32", self.half()):
                    eng = self.engine(model, precision)
                    total = 0.0
                    for pair in self.pairs:
                        img = cv2.imread(str(GOLDEN / pair / "frame0.png"))
                        w = img.shape[1] - 6
                        a, mid, b = (img[:, x : x + w] for x in (0, 3, 6))
                        (got,) = eng.interpolate(a, b, [HALF])
                        total += psnr(got[:, 6:-6], mid[:, 6:-6])
                    gains.append(total / len(self.pairs))
                delta = gains[1] - gains[0]
                self.rows.append(
                    Row(
                        f"pans {model} {self.half()} - fp32 PSNR vs truth",
                        f"{delta:+.3f} dB ({gains[1]:.2f} vs {gains[0]:.2f})",
                        f"within {TARGET_FP16_DB} dB",
                        abs(delta) <= TARGET_FP16_DB,
                        {"half_db": gains[1], "fp32_db": gains[0]},
                    )
                )

    def two_batches(self) -> None:
        eng = self.engine("v3.6")
        depth = eng.concurrent_batches
        outs = []
        # One at a time first: cuDNN's benchmark mode picks its algorithms for the new shapes
        # then, so that both runs use the same ones (two threads timing the same shape at once
        # could each pick another).
        for d in (1, depth):
            with mock.patch.object(
                type(eng.backend), "concurrent_batches", property(lambda self, d=d: d)
            ):
                self.run_pipeline(eng, self.tmp / f"depth{d}.mkv", codec="ffv1")
            outs.append(decode(self.tmp / f"depth{d}.mkv"))
        same = len(outs[0]) == len(outs[1]) and all(np.array_equal(x, y) for x, y in zip(*outs))
        self.rows.append(
            Row(
                "two batches in flight vs one",
                f"{'identical' if same else 'DIFFERENT'} ({len(outs[0])} frames, {depth} in flight)",
                "identical",
                same,
                {"in_flight": depth},
            )
        )

    def graphs(self) -> None:
        if not self.cuda or self.skip_graphs:
            why = "n/a on the CPU" if not self.cuda else "skipped (--skip-graphs)"
            self.rows.append(Row("CUDA graphs vs compiled, compiled vs eager", why))
            return
        from rife_cli.bench import synthetic_frames

        w, h = self.sizes.graphs
        f = synthetic_frames(w, h, 4)
        made = {}
        for name, kw in (
            ("eager", {}),
            ("compiled", {"compile": True}),
            ("graphs", {"cuda_graphs": True}),
        ):
            eng = self.engine("v3.6", "fp16", batch_size=2, **kw)
            made[name] = [eng.interpolate(f[i], f[i + 1], [HALF])[0] for i in range(3)]
        same = all(np.array_equal(x, y) for x, y in zip(made["graphs"], made["compiled"]))
        worst = min(psnr(x, y) for x, y in zip(made["compiled"], made["eager"]))
        self.rows.append(
            Row(
                "CUDA graphs vs compiled (v3.6 fp16)",
                "identical" if same else "DIFFERENT",
                "identical",
                same,
            )
        )
        self.rows.append(
            Row("compiled vs eager (v3.6 fp16)", f"{db(worst)} dB", ">= 40 dB", worst >= 40)
        )

    def nvdec(self) -> None:
        from rife_cli.doctor import nvdec_works

        if not self.cuda or not nvdec_works("h264", self.tmp):
            why = "n/a on the CPU" if not self.cuda else "n/a: NVDEC does not decode here"
            self.rows.append(Row("NVDEC vs software decoding", why))
            return
        eng = self.engine("v3.6")
        outs = {}
        for hw in (None, "cuda"):
            s, _ = self.run_pipeline(eng, self.tmp / f"hw{hw}.mkv", codec="ffv1", hwaccel=hw)
            outs[hw] = (s.hwaccel, decode(self.tmp / f"hw{hw}.mkv"))
        sw, hw = outs[None][1], outs["cuda"][1]
        passed = all(np.array_equal(x, y) for x, y in zip(sw[0::2], hw[0::2]))
        made = max(
            int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(sw[1::2], hw[1::2])
        )
        ok = outs["cuda"][0] == "cuda" and len(sw) == len(hw) and passed and made <= 2
        self.rows.append(
            Row(
                "NVDEC vs software decoding",
                f"pass-through {'identical' if passed else 'DIFFERENT'}, made frames within "
                f"{made} levels",
                "identical, <= 2",
                ok,
                {"decoded_by": outs["cuda"][0], "made_max_diff": made},
            )
        )

    def model_speed(self) -> None:
        from rife_cli.bench import baseline_engine, model_pairs_per_s, synthetic_frames

        w, h = self.sizes.model
        for model in ("v3.6", "v4.0"):
            base_eng = baseline_engine(model, str(self.dev))
            frames = synthetic_frames(w, h, 17)
            base = model_pairs_per_s(base_eng, frames[:5] if self.cuda else frames[:2], repeats=1)
            base_eng.close()
            eng = self.engine(model)  # auto precision: fp16 on CUDA
            batch = eng.batch_for(w, h)
            ours = model_pairs_per_s(eng, frames[: batch + 1], repeats=3 if self.cuda else 1)
            target = TARGET_PAIRS[model] if self.cuda else None
            self.rows.append(
                Row(
                    f"model pairs/s {model} {eng.precision} {w}x{h}",
                    f"{ours:.1f} (baseline {base:.2f}, {ours / base:.2f}x), batch {batch}",
                    f">= {target:.0f}" if target else "",
                    ours >= target if target else None,
                    {"pairs_per_s": ours, "baseline": base, "batch": batch},
                )
            )
            eng.close()

    def end_to_end(self) -> None:
        from rife_cli.bench import baseline_e2e, baseline_engine
        from rife_cli.doctor import nvenc_works

        base_eng = baseline_engine("v3.6", str(self.dev))
        start = time.perf_counter()
        n_base = baseline_e2e(base_eng, self.clip(), self.tmp / "base.mp4", preset="veryfast")
        base_fps = n_base / (time.perf_counter() - start)
        base_eng.close()
        eng = self.engine("v3.6")
        encoders = [("x264 veryfast", {"preset": "veryfast"})]
        if self.cuda and nvenc_works("h264"):
            encoders.append(("NVENC h264", {"codec": "h264_nvenc"}))
        w, h = self.sizes.clip
        for name, opts in encoders:
            s, secs = self.run_pipeline(eng, self.tmp / "ours.mp4", **opts)
            fps = s.frames_out / secs
            ratio = fps / base_fps
            self.rows.append(
                Row(
                    f"end-to-end {w}x{h} 2x v3.6, {name}",
                    f"{fps:.1f} fps (baseline x264 veryfast {base_fps:.2f}, {ratio:.2f}x; "
                    f"{s.frames_out} vs {n_base} frames)",
                    f">= {TARGET_E2E:.0f}x" if self.cuda else "equal frame counts",
                    (ratio >= TARGET_E2E if self.cuda else True) and s.frames_out == n_base,
                    {"fps": fps, "baseline_fps": base_fps, "frames": s.frames_out},
                )
            )
        eng.close()

    def uhd(self) -> None:
        from rife_cli.bench import synthetic_frames
        from rife_cli.engine import Request
        from rife_cli.engine.cuda import pair_bytes

        w, h = self.sizes.uhd
        torch = self.torch
        for model in ("v3.6", "v4.0"):
            eng = self.engine(model, scale=0.5)
            batch = eng.batch_for(w, h)
            frames = synthetic_frames(w, h, min(batch, 8) + 1)
            if self.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.dev)
            n = len(frames) - 1
            with eng.stream():
                x = eng.to_tensor(frames)
                outs = eng.make(x[:n], x[1:], [Request(i, HALF) for i in range(n)])
                bad = sum(int(not bool(torch.isfinite(o).all())) for o in outs)
            self.sync()
            if self.cuda:
                peak = torch.cuda.max_memory_allocated(self.dev) / 2**30
                where = "peak GPU"
            else:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                where = "peak RSS"
            model_gib = pair_bytes(w, h, eng.family, 0.5, eng.precision) * batch / 2**30
            self.rows.append(
                Row(
                    f"{w}x{h} --uhd {model} {eng.precision}, {n} pairs",
                    f"{where} {peak:.2f} GiB (model: {model_gib:.2f} GiB for {batch}), "
                    f"NaN/Inf frames {bad}, fp32 redone {eng.fp32_fallbacks}",
                    "0 NaN/Inf",
                    bad == 0,
                    {"peak_gib": peak, "nonfinite": bad, "batch": batch, "model_gib": model_gib},
                )
            )
            eng.close()

    def memory_model(self) -> None:
        w, h = GPU_SIZES.model
        from rife_cli.engine import pick_precision

        # At 1080p for each model in the default precision (the --uhd rows say what it chose at 4K).
        auto = pick_precision("auto", self.dev)
        chosen = {
            e.source.label: e.batch_for(w, h)
            for e in self.engines
            if e.scale == 1.0 and not e.compile and e.precision == auto
        }
        backoffs = sum(e.oom_backoffs for e in self.engines)
        text = ", ".join(f"{m} {n} at 1080p" for m, n in chosen.items())
        self.rows.append(
            Row(
                "memory model batch; out-of-memory back-offs",
                f"{text}; backed off {backoffs} time(s)",
                "",
                None,
                {"batches": chosen, "oom_backoffs": backoffs},
            )
        )

    def run(self) -> list[Row]:
        for check in (
            self.golden,
            self.two_batches,
            self.nvdec,
            self.model_speed,
            self.end_to_end,
            self.uhd,
            self.graphs,
            self.memory_model,
        ):
            start = time.perf_counter()
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - one failed check must not hide the others
                traceback.print_exc()
                error = f"ERROR {type(exc).__name__}: {exc}"[:200]
                self.rows.append(Row(check.__name__, error, "", False))
            for e in self.engines:
                e.close()  # CPU lanes: no idle threads of one check beside the next one's work
            print(f"  {check.__name__}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for e in self.engines:
            e.close()
        return self.rows


def table(rows: list[Row]) -> str:
    lines = ["| check | result | target | ok |", "| --- | --- | --- | --- |"]
    for r in rows:
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(f"| {r.check} | {r.value} | {r.target} | {ok} |")
    return "\n".join(lines)


def _finite(v):
    """JSON has no infinity: identical frames' PSNR is written as "inf"."""
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (small sizes)")
    ap.add_argument("--json", default="gpu_check.json", help="where to write the table as JSON")
    ap.add_argument("--skip-graphs", action="store_true", help="leave the CUDA graphs check out")
    args = ap.parse_args()
    started = time.perf_counter()
    import torch

    from rife_cli.bench import machine

    with tempfile.TemporaryDirectory(prefix="rife-gpu-check-") as tmp:
        check = GpuCheck(args.device, Path(tmp), args.skip_graphs)
        with contextlib.redirect_stdout(sys.stderr):
            rows = check.run()
    seconds = time.perf_counter() - started
    ok = all(r.ok is not False for r in rows)
    print(f"Machine: {machine()}; device {check.dev}; {seconds:.0f} s\n")
    print(table(rows))
    Path(args.json).write_text(
        json.dumps(
            {
                "machine": machine(),
                "device": str(check.dev),
                "torch": torch.__version__,
                "seconds": round(seconds, 1),
                "ok": ok,
                "rows": [_finite(asdict(r)) for r in rows],
            },
            indent=1,
            default=str,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
