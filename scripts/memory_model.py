#!/usr/bin/env python3
"""Measure the per-pixel figures of rife_cli.engine.cuda.PAIR_BYTES_PER_PIXEL on the CPU.

`python scripts/memory_model.py [--size 640x352] [--pairs 2] [--models v3.6,4.0,4.6|all]`: for
each memory group and flow scale, one forward of a batch of pairs laid out as on CUDA
(channels-last, no Winograd, native transposed convolutions, v3.x mirrored calls as one batch of
2N, 4.0/4.1's large-motion pass in its CUDA form on the whole batch), in fp32, in a fresh process
whose glibc heap neither trims nor mmaps (rife_cli.engine.hostmem): the heap's growth over the first
forward is the peak of what it held (activations, one-time workspaces, fragmentation). Prints bytes
per pixel and pair, as lines of rife_cli.engine.cuda.PAIR_BYTES_PER_PIXEL.

Models: v3.6 (its weights, fetched or cached) or a 4.x layout's name (rife_cli.models.ifnet_v4x;
"all" for every layout), built without weights files: memory does not depend on the weights'
values once the large-motion pass takes its value-independent CUDA form.
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
net = None
if spec["model"][0].isdigit():
    from rife_cli.models.ifnet_v4x import VERSIONS, IFNetV4x
    net = IFNetV4x(VERSIONS[spec["model"]], spec["model"])
    net.large_motion = "select"  # as on CUDA: the coarse pass on the whole batch, every time
eng = Interpolator(None if net else spec["model"], device="cpu", precision="fp32",
                   scale=spec["scale"], lanes=1, batch_size=spec["pairs"], network=net)
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
    ap.add_argument("--models", default="v3.6,4.0,4.6,4.26")
    ap.add_argument("--runs", type=int, default=2, help="fresh processes each; the largest")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    family = {"v3.6": "v3"}
    models = args.models.split(",")
    if models == ["all"]:
        from rife_cli.models.ifnet_v4x import LAYOUTS

        models = ["v3.6", *(lay.name for lay in LAYOUTS)]
    for model in models:
        for scale in (float(s) for s in args.scales.split(",")):
            spec = {"model": model, "scale": scale, "w": w, "h": h, "pairs": args.pairs}
            runs = []
            for _ in range(args.runs):  # the heap's growth varies from run to run
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode:
                    print(f"# {model} at {scale}: failed: {out.stderr.strip().splitlines()[-1]}")
                    break
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not runs:
                continue
            r = max(runs, key=lambda r: r["bytes"])
            print(
                f'("{family.get(model, model)}", {scale}): {r["per_pixel_pair"]:.0f},'
                f"  # {model} {w}x{h} {args.pairs} pairs: {r['bytes'] / 2**20:.0f} MiB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
