"""Soak: the command line over a long clip, a batch of many files, --dedup and --devices cpu,cpu,
with the resident memory of the process and its workers sampled as it runs.

    python scripts/soak.py --frames 1000 --files 100 --size 64x48

Each run is `rife interpolate` in a child process; its RSS (the process and every descendant,
from /proc) is sampled every --every seconds. Memory that is flat shows as a small growth between
the middle of the run and its end; a leak of even a few KiB a frame shows over thousands.
Prints a Markdown table, with the command that made it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_tree(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Result:
    name: str
    size: str
    seconds: float
    samples: list[tuple[float, int]]  # (seconds since start, bytes)
    code: int

    def mib(self, b: float) -> str:
        return f"{b / 2**20:.0f}"

    def row(self) -> str:
        rss = [b for _, b in self.samples if b]
        if not rss:
            return (
                f"| {self.name} | {self.size} | {self.seconds:.0f} | - | - | - | - | {self.code} |"
            )
        # half-way, the start (imports, model, first batches) is long over on a long run
        half = [b for t, b in self.samples if b and t <= self.seconds / 2] or rss[:1]
        early, late = max(half), max(rss[-max(1, len(rss) // 10) :])
        return (
            f"| {self.name} | {self.size} | {self.seconds:.0f} | {self.mib(early)} | "
            f"{self.mib(max(rss))} | {self.mib(late)} | {(late - early) / 2**20:+.0f} | "
            f"{self.code} |"
        )


def run(name: str, size: str, args: list[str], every: float) -> Result:
    cmd = [sys.executable, "-m", "rife_cli", "interpolate", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        samples.append((time.perf_counter() - t0, rss_tree(proc.pid)))
        time.sleep(every)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode:
        print(f"{name}: exit {proc.returncode}: {err.strip()[-400:]}", file=sys.stderr)
    return Result(name, size, time.perf_counter() - t0, samples, proc.returncode)


def make_clip(path: Path, n: int, w: int, h: int, hold: int = 1) -> Path:
    """n frames of a square moving over a gradient; with `hold`, each picture shown that many
    times (animation on twos: what --dedup takes out). FFV1, so nothing is lost to coding."""
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            k = i // hold
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (xx * 255 // max(1, w - 1)).astype(np.uint8)
            img[..., 1] = (yy * 255 // max(1, h - 1)).astype(np.uint8)
            x0 = (2 * k) % max(1, w - w // 4)
            img[h // 4 : h // 2, x0 : x0 + w // 4] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames of the long clip")
    ap.add_argument("--files", type=int, default=100, help="files in the batch")
    ap.add_argument("--file-frames", type=int, default=6)
    ap.add_argument("--size", default="64x48")
    ap.add_argument("--model", default="v4.0")
    ap.add_argument("--every", type=float, default=0.25, help="seconds between RSS samples")
    ap.add_argument("--only", default="long,batch,dedup,devices")
    args = ap.parse_args(argv)
    w, h = map(int, args.size.split("x"))
    model = ["--model", args.model, "--precision", "fp32", "-q", "--force"]
    only = set(args.only.split(","))
    results = []
    print(f"`python scripts/soak.py {shlex.join(argv if argv is not None else sys.argv[1:])}`")
    print(f"({args.size}, model {args.model} fp32 on the CPU; RSS of the process and its workers)")
    print()
    print(
        "| run | input | wall s | RSS half-way (MiB) | peak (MiB) | "
        "at the end (MiB) | growth (MiB) | exit |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)

    def done(r: Result) -> None:
        results.append(r)
        print(r.row(), flush=True)  # as each ends: a soak cut short keeps what it measured

    with tempfile.TemporaryDirectory(prefix="rife-soak-") as tmp:
        tmp = Path(tmp)
        long_clip = make_clip(tmp / "long.mkv", args.frames, w, h)
        if "long" in only:
            done(
                run("long run, --exp 1", f"{args.frames} frames",
                    [str(long_clip), "-o", str(tmp / "long_out.mkv"), *model], args.every)
            )  # fmt: skip
        if "batch" in only:
            folder = tmp / "batch"
            folder.mkdir()
            one = make_clip(tmp / "one.mkv", args.file_frames, w, h)
            for i in range(args.files):
                os.link(one, folder / f"clip{i:04d}.mkv")
            done(
                run("batch of a folder", f"{args.files} files x {args.file_frames} frames",
                    [str(folder), "-o", str(tmp / "batch_out"), *model], args.every)
            )  # fmt: skip
        if "dedup" in only:
            twos = make_clip(tmp / "twos.mkv", args.frames, w, h, hold=2)
            done(
                run("--dedup (animation on twos)", f"{args.frames} frames",
                    [str(twos), "-o", str(tmp / "dedup_out.mkv"), "--dedup", *model], args.every)
            )  # fmt: skip
        if "devices" in only:
            done(
                run("--devices cpu,cpu", f"{args.frames} frames",
                    [str(long_clip), "-o", str(tmp / "dev_out.mkv"), "--devices", "cpu,cpu",
                     *model], args.every)
            )  # fmt: skip
    return max((r.code != 0 for r in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
