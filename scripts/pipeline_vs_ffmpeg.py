#!/usr/bin/env python3
"""rife's pipeline with a network that costs nothing against the ffmpeg program making the same
frames, whole commands, alternated: `python scripts/pipeline_vs_ffmpeg.py CLIP... [--rounds 3]`.

rife's side is a fresh interpreter running rife_cli.bench.pipeline_bench (interpolate's pipeline with
the stand-in engine, its own bare PyAV run left out); ffmpeg's is
`ffmpeg -i IN -vf fps=<2^exp x rate> -c:v CODEC -preset P -crf Q OUT`. Each side's output fps is
its frames written over the whole command's wall-clock time, start-up included. Prints a
Markdown table with the median ratio per clip, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

RIFE = """
import json, sys
from rife_cli.bench import pipeline_bench
r = pipeline_bench(sys.argv[1], exp=int(sys.argv[2]), codec=sys.argv[3], preset=sys.argv[4],
                   crf=int(sys.argv[5]), output=sys.argv[6], bare=False)
print(json.dumps(r))
"""


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


def rate_of(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return Fraction(s.average_rate or s.guessed_rate)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall-clock and CPU seconds of a command (its CPU time does not depend on what else loads
    the machine, as the wall-clock time does)."""
    cpu, start = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-2000:]}")
    return took, children_cpu() - cpu, proc.stdout


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--exp", type=int, default=1)
    ap.add_argument("--codec", default="libx264")
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--crf", type=int, default=18)
    args = ap.parse_args()
    print(f"load average before: {load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rife-vs-ffmpeg-") as tmp:
        for clip in args.clips:
            rate = rate_of(clip) * 2**args.exp
            ours_out = Path(tmp) / f"rife{clip.suffix}"
            ff_out = Path(tmp) / f"ffmpeg{clip.suffix}"
            ff = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-an", "-vf"]
            ff += [f"fps={rate.numerator}/{rate.denominator}", "-c:v", args.codec]
            ff += ["-preset", args.preset, "-crf", str(args.crf), str(ff_out)]
            rife = [sys.executable, "-c", RIFE, str(clip), str(args.exp), args.codec]
            rife += [args.preset, str(args.crf), str(ours_out)]
            ratios, cpu_ratios = [], []
            for r in range(args.rounds):
                ours_out.unlink(missing_ok=True)
                ff_s, ff_cpu, _ = timed(ff)
                ff_n = frames_in(ff_out)
                ours_s, ours_cpu, out = timed(rife)
                res = json.loads(out.strip().splitlines()[-1])
                ff_fps, ours_fps = ff_n / ff_s, res["frames_out"] / ours_s
                ratios.append(ours_fps / ff_fps)
                ff_ms, ours_ms = 1000 * ff_cpu / ff_n, 1000 * ours_cpu / res["frames_out"]
                cpu_ratios.append(ff_ms / ours_ms)
                rows.append(
                    f"| {clip.name} | {r + 1} | {ff_n} in {ff_s:.2f} s = {ff_fps:.1f} fps, "
                    f"CPU {ff_ms:.1f} ms/frame | {res['frames_out']} in {ours_s:.2f} s = "
                    f"{ours_fps:.1f} fps (pipeline alone {res['fps_out']:.1f}), CPU "
                    f"{ours_ms:.1f} ms/frame | {ours_fps / ff_fps:.2f}x | {ff_ms / ours_ms:.2f}x |"
                )
                print(rows[-1], flush=True)
            ratios.sort()
            cpu_ratios.sort()
            mid = len(ratios) // 2
            rows.append(
                f"| {clip.name} | median | | | **{ratios[mid]:.2f}x** | **{cpu_ratios[mid]:.2f}x** |"
            )
    print()
    print(
        f"`{args.codec} --preset {args.preset} --crf {args.crf}`, --exp {args.exp}; "
        f"load average after: {load()}"
    )
    print(
        "| clip | round | ffmpeg | rife (stand-in network) | rife / ffmpeg fps | "
        "ffmpeg / rife CPU per frame |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
