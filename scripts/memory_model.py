#!/usr/bin/env python3
"""Measure the per-pixel figures of rife_cli.engine.cuda.PAIR_BYTES_PER_PIXEL on the CPU.

`python scripts/memory_model.py [--size 640x352] [--pairs 2]`: for each family and flow scale, one
forward of a batch of pairs laid out as on CUDA (channels-last, no Winograd, native transposed
convolutions, v3.x mirrored calls as one batch of 2N), in fp32, in a fresh process whose glibc heap
neither trims nor mmaps (rife_cli.engine.hostmem): the heap's growth over the first forward is the peak of
what it held (activations, one-time workspaces, fragmentation). Prints bytes per pixel and pair.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import ctypes, json, sys
from rife_cli.engine import hostmem
hostmem.keep_freed_memory()

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
import torch
from fractions import Fraction
from rife_cli.engine import Interpolator, Request
from rife_cli.bench import synthetic_frames

spec = json.loads(sys.argv[1])
torch.set_num_threads(1)
eng = Interpolator(spec["model"], device="cpu", precision="fp32", scale=spec["scale"], lanes=1,
                   batch_size=spec["pairs"])
eng.backend.winograd = False  # as on CUDA (channels-last kept)
if hasattr(eng.net, "mirrored_map"):
    eng.net.mirrored_map = None  # one batch of 2N, as on CUDA
    eng.net.joint_stem = False
w, h = spec["w"], spec["h"]
frames = synthetic_frames(w, h, spec["pairs"] + 1)
x = eng.to_tensor(frames)
n = spec["pairs"]
reqs = [Request(i, Fraction(1, 2)) for i in range(n)]
del frames
# No warm-up: a pass leaves its freed blocks in the heap, which a later pass would reuse unseen.
before = libc.mallinfo2().arena
eng.make(x[:n], x[1 : n + 1], reqs)
grown = libc.mallinfo2().arena - before
hp, wp = x.shape[2:]
print(json.dumps({"bytes": grown, "per_pixel_pair": grown / (hp * wp * n)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="640x352")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--scales", default="0.25,0.5,1,2,4")
    ap.add_argument("--models", default="v3.6,v4.0")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    family = {"v3.6": "v3", "v4.0": "v4"}
    for model in args.models.split(","):
        for scale in (float(s) for s in args.scales.split(",")):
            spec = {"model": model, "scale": scale, "w": w, "h": h, "pairs": args.pairs}
            out = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(spec)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f'("{family.get(model, model)}", {scale}): {r["per_pixel_pair"]:.0f},'
                f"  # {model} {w}x{h} {args.pairs} pairs: {r['bytes'] / 2**20:.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
