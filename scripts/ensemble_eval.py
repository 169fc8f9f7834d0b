#!/usr/bin/env python3
"""What --ensemble costs and whether it helps: `python scripts/ensemble_eval.py [--model v4.0 ...]`.

For each model: seconds per pair with and without --ensemble on the golden pairs (tests/data/golden,
fp32, CPU, medians of `--repeats`), how far apart the two outputs are (PSNR), and the PSNR of a
dropped middle frame (frames 0 and 2 interpolated at t = 1/2 against frame 1) on synthetic clips with
real motion (rife_cli.bench.synthetic_frames: panning texture and a moving disc). The machine holds
no real clip with three consecutive frames, so the quality column is synthetic; quote it as such.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from rife_cli.bench import synthetic_frames
from rife_cli.engine import Interpolator, Request

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def middle(engine: Interpolator, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    x = engine.to_tensor([a, b])
    start = time.perf_counter()
    (out,) = engine.make(x[0:1], x[1:2], [Request(0, Fraction(1, 2))])
    seconds = time.perf_counter() - start
    return engine.to_arrays(out, *a.shape[:2])[0], seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", action="append", default=None, help="repeatable; default v4.0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clips", type=int, default=3, help="synthetic clips (seeds)")
    ap.add_argument("--size", default="448x256")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    pairs = [
        [cv2.imread(str(GOLDEN / p / f"frame{i}.png")) for i in (0, 1)] for p in ("I0", "I1", "I2")
    ]
    # 12-frame clips (a disc moving w/48 px per frame over a panning texture), three triplets each
    clips = [
        c[i : i + 3] for s in range(args.clips) for c in [synthetic_frames(w, h, 12, seed=s)]
        for i in (0, 4, 8)
    ]  # fmt: skip
    print(
        "| model | ensemble | s/pair golden (median) | cost | PSNR vs plain, golden (dB) "
        f"| dropped middle, synthetic {w}x{h} (dB, mean of {len(clips)}) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for model in args.model or ["v4.0"]:
        rows = {}
        for ensemble in (False, True):
            if ensemble and model.startswith("v3"):
                continue  # v3.x always runs both orders
            eng = Interpolator(model, device="cpu", precision="fp32", ensemble=ensemble)
            middle(eng, *pairs[0])  # warm-up
            secs, outs = [], []
            for a, b in pairs:
                out, _ = middle(eng, a, b)
                outs.append(out)
                secs += [middle(eng, a, b)[1] for _ in range(args.repeats)]
            quality = [psnr(middle(eng, c[0], c[2])[0], c[1]) for c in clips]
            rows[ensemble] = (statistics.median(secs), outs, statistics.mean(quality))
            eng.close()
        base_s, base_outs, _ = rows[False]
        for ensemble, (s, outs, q) in rows.items():
            vs = (
                "-"
                if not ensemble
                else f"{statistics.mean(psnr(o, p) for o, p in zip(outs, base_outs)):.1f}"
            )
            what = "always" if model.startswith("v3") else "yes" if ensemble else "no"
            print(f"| {model} | {what} | {s:.3f} | {s / base_s:.2f}x | {vs} | {q:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
