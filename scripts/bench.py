#!/usr/bin/env python3
"""Produce the performance table of README.md: `python scripts/bench.py [--size WxH ...] [rife bench options]`.

Every row compares our default path with the reference-like baseline (fp32, NCHW, one pair per
forward, no overlap) measured in the same run, alternated, and quotes the ratio.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from rife_cli.bench import machine, run_bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--size", action="append", default=None, help="WxH (repeatable; default 1280x720)"
    )
    ap.add_argument("--model", default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--pad-channels", type=int, default=0)
    args = ap.parse_args()
    sizes = args.size or ["1280x720"]
    rows = []
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        r = run_bench(
            args.model,
            (w, h),
            args.precision,
            args.batch_size,
            args.compile,
            args.device,
            args.frames,
            rounds=args.rounds,
            scale=args.scale,
            pad_channels=args.pad_channels,
            log=lambda m: print(m, file=sys.stderr),
        )
        rows.append(r)
    print(f"Machine: {machine()}  ")
    print(f"Command: `python scripts/bench.py {shlex.join(sys.argv[1:])}`\n")
    print(
        "| size | model | device | precision | batch | compiled | model pairs/s (baseline) | ratio "
        "| end-to-end fps (baseline) | ratio | peak RSS MiB | peak GPU MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        gpu = f"{r.peak_gpu_mib:.0f}" if r.peak_gpu_mib is not None else "-"
        print(
            f"| {r.size} | {r.label} | {r.device} | {r.precision} | {r.batch_size} | {'yes' if r.compile else 'no'} "
            f"| {r.pairs_per_s:.3f} ({r.baseline_pairs_per_s:.3f}) | {r.model_ratio:.2f}x "
            f"| {r.e2e_fps:.3f} ({r.baseline_e2e_fps:.3f}) | {r.e2e_ratio:.2f}x | {r.peak_rss_mib:.0f} | {gpu} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
