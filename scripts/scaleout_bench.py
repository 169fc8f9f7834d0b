"""Wall time of one process against --devices with N workers on the same clip, alternated, and the
serial parts of a sharded run (probe, final join) timed on their own.

    python scripts/scaleout_bench.py --devices cpu,cpu --size 480x272 --frames 240 --rounds 2

On one machine the workers share its cores (each gets cores / N threads), so the ratio says what
the split costs; on a box with N GPUs it is the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cpu,cpu")
    ap.add_argument("--size", default="480x272")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="v3.6")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    from media import Clip, Track, make_clip

    w, h = (int(v) for v in args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="rife-scale-"))
    clip = Clip(".mkv", rate=Fraction(24000, 1001), n=args.frames, w=w, h=h, audio=[Track()])
    src = make_clip(folder / "in.mkv", clip)
    base = ["rife", "interpolate", str(src), "-q", "--force", "--model", args.model]
    base += ["--precision", args.precision]
    one, many = [], []
    for _ in range(args.rounds):
        one.append(run([*base, "-o", str(folder / "one.mkv")]))
        many.append(run([*base, "-o", str(folder / "many.mkv"), "--devices", args.devices]))
    # the serial parts, alone
    from rife_cli.pipeline import finish_video
    from rife_cli.video.source import probe

    t = time.perf_counter()
    info = probe(src)
    t_probe = time.perf_counter() - t
    t = time.perf_counter()
    finish_video(
        [folder / "many.mkv"], src, info, folder / "joined.mkv", False, info.start, lambda m: None
    )
    t_join = time.perf_counter() - t
    seconds = args.frames / float(clip.rate)
    n = len(args.devices.split(","))
    print(f"clip: {w}x{h}, {args.frames} frames ({seconds:.1f} s), model {args.model}")
    print(f"one process: {' / '.join(f'{x:.1f}' for x in one)} s")
    print(f"--devices {args.devices}: {' / '.join(f'{x:.1f}' for x in many)} s")
    ratio = statistics.median(many) / statistics.median(one)
    print(
        f"medians: {statistics.median(one):.1f} vs {statistics.median(many):.1f} s = {ratio:.3f}x"
    )
    print(
        f"serial parts: probe {t_probe * 1000:.0f} ms, join {t_join * 1000:.0f} ms for "
        f"{seconds:.1f} s of video ({t_join / seconds * 3600:.1f} s per hour at this size), "
        f"{n} workers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
