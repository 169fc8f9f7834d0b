"""--dedup on animation "on twos": PSNR of the in-betweens against the true frames.

A real clip is made at 48 fps (a camera window panning, unevenly, over a real frame from
../shared/golden at 3x; or ffmpeg's mandelbrot zoom), its 24 fps frames are turned "on twos" by
holding every other frame (frames 2k and 2k + 1 both show true frame 4k), encoded with x264 CRF 18,
and interpolated 2x back to 48 fps with the real network (v4.0) with and without `--dedup`. Every
output frame that is not a drawing passed through is compared with the true 48 fps frame at its
time; the duplicate baseline is the on-twos clip shown at 48 fps as it is (each frame repeated).
The last drawing, which has no next one to move to, is left out.

    python scripts/dedup_psnr.py [--frames 24] [--model v4.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rife_cli.bench import write_clip
from rife_cli.pipeline import interpolate_video

GOLDEN = ROOT.parent / "shared" / "golden"
W, H = 448, 256


def pan_truth(n: int) -> list[np.ndarray]:
    """n frames at 48 fps: a window moving right and down over a real frame, speeding up and
    slowing down (2-10 px a frame)."""
    big = cv2.resize(
        cv2.imread(str(GOLDEN / "I1" / "frame0.png")),
        None,
        fx=3,
        fy=3,
        interpolation=cv2.INTER_CUBIC,
    )
    out = []
    for j in range(n):
        x = 100 + 6 * j + 40 * np.sin(j / 8)
        y = 120 + 1.5 * j + 10 * np.sin(j / 5)
        m = np.float32([[1, 0, x], [0, 1, y]])
        out.append(cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP))
    return out


def mandelbrot_truth(n: int) -> list[np.ndarray]:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"mandelbrot=s={W}x{H}:r=48", "-ss", "4"]
        + ["-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3))


def encode(path: Path, frames: list[np.ndarray]) -> None:
    write_clip(path, frames, Fraction(24), crf=18, preset="medium")


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24, help="source frames at 24 fps")
    ap.add_argument("--model", default="v4.0")
    args = ap.parse_args()
    n = args.frames
    print("| clip | in-betweens | duplicates shown (baseline) | rife 2x | rife 2x --dedup |")
    print("| --- | --- | --- | --- | --- |")
    for name, make in (("pan over a real frame", pan_truth), ("mandelbrot zoom", mandelbrot_truth)):
        truth = make(2 * n)
        twos = [truth[4 * (i // 2)] for i in range(n)]  # 24 fps, each drawing held two frames
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "twos.mkv"
            encode(src, twos)
            shown = decode(src)
            rows = {}
            for dedup in (False, True):
                out = Path(tmp) / f"out_{dedup}.mkv"
                s = interpolate_video(
                    src,
                    out,
                    exp=1,
                    dedup=dedup,
                    model=args.model,
                    device="cpu",
                    precision="fp32",
                    codec="libx264",
                    crf=10,
                )
                rows[dedup] = (decode(out), s)
        last = 4 * ((n - 1) // 2)  # the last drawing's output frame
        js = [j for j in range(last) if j % 4]
        base = np.mean([psnr(shown[j // 2], truth[j]) for j in js])
        made = [np.mean([psnr(rows[d][0][j], truth[j]) for j in js]) for d in (False, True)]
        print(
            f"| {name} | {len(js)} | {base:.2f} dB | {made[0]:.2f} dB | {made[1]:.2f} dB "
            f"({rows[True][1].duplicates} duplicates dropped) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
