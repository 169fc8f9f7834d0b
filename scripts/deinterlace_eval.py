"""Which FFmpeg deinterlacer to use: bwdif against yadif on interlaced frames woven from the
fields of a progressive clip at twice the rate, so each deinterlaced field has its true picture.

Measured per deinterlacer: combing (rife_cli.video.filters.combing, as a ratio to the progressive
source's own), luma PSNR against the progressive frame the field came from, and milliseconds per
field out. The woven frames taken as they are (what interpolating an interlaced source without
deinterlacing starts from) are the baseline row.

    python scripts/deinterlace_eval.py --size 720x576 --frames 40
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from rife_cli.video.filters import DEINTERLACERS, Deinterlacer, Interlace, combing

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"


def progressive(n: int, w: int, h: int) -> list[np.ndarray]:
    """n frames (BGR) of a pan over a real photograph: 3 pixels right and 1 down a frame."""
    photo = cv2.imread(str(GOLDEN / "I0" / "frame0.png"))
    k = max((w + 3 * n + 8) / photo.shape[1], (h + n + 8) / photo.shape[0])
    canvas = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    return [canvas[1 * i : 1 * i + h, 3 * i : 3 * i + w].copy() for i in range(n)]


def weave(first: np.ndarray, second: np.ndarray, order: str) -> np.ndarray:
    """One interlaced frame: the earlier field from `first`, the later from `second`."""
    out = first.copy()
    later = slice(1, None, 2) if order == "tff" else slice(0, None, 2)
    out[later] = second[later]
    return out


def yuv(img: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv444p")


def y_of(frame: av.VideoFrame) -> np.ndarray:
    """The luma plane, as the deinterlacer sees it (limited range, BT.601)."""
    p = frame.planes[0]
    rows = np.frombuffer(p, np.uint8).reshape(-1, p.line_size)
    return rows[: frame.height, : frame.width]


def luma(img: np.ndarray) -> np.ndarray:
    return y_of(yuv(img))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def evaluate(frames: list[np.ndarray], order: str) -> list[dict]:
    woven = [weave(frames[2 * k], frames[2 * k + 1], order) for k in range(len(frames) // 2)]
    truth = [luma(f) for f in frames]
    base = np.mean([combing(y) for y in truth])
    rows = [
        {
            "method": "none (woven frames)",
            "combing": np.mean([combing(luma(f)) for f in woven]) / base,
            "psnr": np.mean([psnr(luma(f), truth[2 * k]) for k, f in enumerate(woven)]),
            "ms": 0.0,
        }
    ]
    tb = Fraction(1, 25)
    for name in DEINTERLACERS:
        d = Deinterlacer(Interlace(order, "eval"), tb, name)
        out, spent = [], 0.0
        for k, img in enumerate(woven):
            f = yuv(img)
            f.pts, f.time_base = k, tb
            t0 = time.perf_counter()
            got = d.push(f)
            spent += time.perf_counter() - t0
            out += got
        t0 = time.perf_counter()
        out += d.flush()
        spent += time.perf_counter() - t0
        # the first and last frames have only one neighbour: leave them out of the scores
        ys = [y_of(o) for o in out][2:-2]
        rows.append(
            {
                "method": name,
                "combing": np.mean([combing(y) for y in ys]) / base,
                "psnr": np.mean([psnr(y, truth[j + 2]) for j, y in enumerate(ys)]),
                "ms": 1000 * spent / len(out),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="720x576")
    ap.add_argument("--frames", type=int, default=40, help="progressive frames (fields)")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    frames = progressive(args.frames, w, h)
    print(f"{w}x{h}, {args.frames} fields; combing as a ratio to the progressive source's")
    print("| order | deinterlacer | combing | luma PSNR (dB) | ms per field |")
    print("| --- | --- | ---: | ---: | ---: |")
    for order in ("tff", "bff"):
        for r in evaluate(frames, order):
            print(
                f"| {order} | {r['method']} | {r['combing']:.2f} | {r['psnr']:.2f} | "
                f"{r['ms']:.2f} |"
            )


if __name__ == "__main__":
    main()
