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
    ap.add_argument(
        "--large-motion",
        action="store_true",
        help="instead: 4.0/4.1's large-motion forms (subset, select) against each other",
    )
    args = ap.parse_args()
    sizes = args.size or ["1280x720"]
    if args.large_motion:
        return large_motion_table(args, sizes)
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


def large_motion_table(args, sizes: list[str]) -> int:
    """Model pairs/s of a family-A model (default v4.0) with its large-motion redo in the
    subset form (the pairs that need it, read on the host: a wait for the device on CUDA) and
    in the select form (the coarse pass on the whole batch, picked on the device: no wait),
    alternated round by round in one process. On frames without large motion the subset form
    does no extra work, so the ratio is what the select form costs where it is not needed."""
    from rife_cli.bench import model_pairs_per_s, synthetic_frames
    from rife_cli.engine import Interpolator

    eng = Interpolator(
        args.model or "v4.0",
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        scale=args.scale,
    )
    if getattr(eng.net, "layout", None) is None or eng.net.layout.family != "A":
        print(f"{eng.source.label} has no large-motion pass (family A: 4.0, 4.1)")
        return 2
    print(f"Machine: {machine()}  ")
    print(f"Command: `python scripts/bench.py {shlex.join(sys.argv[1:])}`\n")
    print("| size | model | device | precision | batch | subset pairs/s | select pairs/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        imgs = synthetic_frames(w, h, args.frames)
        got: dict[str, list[float]] = {"subset": [], "select": []}
        for _ in range(args.rounds):
            for form, rates in got.items():
                eng.net.large_motion = form
                rates.append(model_pairs_per_s(eng, imgs, 1))
        sub, sel = (sum(v) / len(v) for v in got.values())
        print(
            f"| {size} | {eng.source.label} | {eng.torch_device} | {eng.precision} "
            f"| {eng.batch_for(w, h)} | {sub:.3f} | {sel:.3f} | {sel / sub:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
