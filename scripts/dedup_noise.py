"""What compression leaves on held drawings, against the smallest real change, in the measure
`--dedup` uses (rife_cli.pipeline.dedup.difference: the largest 16x16 block mean of |luma a - luma b|).

A cel-shaded "drawing" is made from a real frame (tests/data golden frames: posterized, dark lines
from its edges), with a limb that moves on some drawings and a 10x6 px mouth that opens or closes
on the others (the smallest change an animator draws). Each drawing is held 2 or 3 frames, encoded
with x264 / x265 at usual CRFs (PyAV, preset medium), optionally with per-frame film grain on top
(a grainy master), decoded as rife reads it, and every repeat is compared with the first copy of
its drawing (noise) and every new drawing with the previous one (signal).

    python scripts/dedup_noise.py [--size 640x360]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rife_cli.pipeline import dedup
from rife_cli.video.source import probe, read_frames

GOLDEN = ROOT.parent / "shared" / "golden"


def cartoon(img: np.ndarray) -> np.ndarray:
    """A cel-shaded version of a photo: flat colour areas and dark outlines."""
    flat = img
    for _ in range(3):
        flat = cv2.bilateralFilter(flat, 9, 40, 7)
    flat = (flat // 48) * 48 + 24
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 60, 140)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    out = flat.copy()
    out[edges > 0] = (30, 25, 25)
    return out


def drawings(w: int, h: int, n: int) -> tuple[list[np.ndarray], list[str]]:
    """n drawings and what changed from the previous one: 'limb' or 'mouth'."""
    src = cv2.imread(str(GOLDEN / "I1" / "frame0.png"))
    bg = cartoon(cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC))
    out, kinds = [], []
    limb_x, mouth_open = w // 4, False
    for k in range(n):
        if k % 2 == 0:
            limb_x += w // 80
            kinds.append("limb")
        else:
            mouth_open = not mouth_open
            kinds.append("mouth")
        img = bg.copy()
        cv2.ellipse(img, (limb_x, h // 2), (w // 16, h // 30), 20, 0, 360, (90, 160, 230), -1)
        cv2.ellipse(img, (limb_x, h // 2), (w // 16, h // 30), 20, 0, 360, (30, 25, 25), 2)
        mx, my = w // 2, h // 3
        cv2.rectangle(img, (mx, my), (mx + w // 64, my + h // 60), (60, 60, 200), -1)
        if mouth_open:
            cv2.rectangle(
                img, (mx + 2, my + 1), (mx + w // 64 - 2, my + h // 60 - 1), (20, 10, 40), -1
            )
        out.append(img)
    return out, kinds


def encode(path: Path, frames: list[np.ndarray], codec: str, crf: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(24000, 1001))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        opts = {"crf": str(crf), "preset": "medium"}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        s.codec_context.options = opts
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--drawings", type=int, default=24)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    pics, kinds = drawings(w, h, args.drawings)
    holds = [2 + (k % 2) for k in range(len(pics))]  # 2, 3, 2, 3...: twos and threes
    which = [k for k, n in enumerate(holds) for _ in range(n)]
    rng = np.random.default_rng(0)
    print("| codec | CRF | grain | noise on repeats: max (mean) | smallest change: mouth | limb |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for grain in (0.0, 2.0):
            frames = []
            for k in which:
                img = pics[k].astype(np.float32)
                if grain:
                    img += rng.normal(0, grain, img.shape).astype(np.float32)
                frames.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
            for codec, crfs in (("libx264", (14, 18, 23, 28)), ("libx265", (18, 23, 28))):
                for crf in crfs:
                    path = Path(tmp) / f"{codec}_{crf}_{grain}.mkv"
                    encode(path, frames, codec, crf)
                    lumas = [dedup.luma(f) for f in read_frames(probe(path))]
                    noise, mouth, limb = [], [], []
                    first = {}
                    for i, k in enumerate(which):
                        if k not in first:
                            first[k] = i
                            if k > 0:
                                d = dedup.difference(lumas[first[k - 1]], lumas[i])
                                (mouth if kinds[k] == "mouth" else limb).append(d)
                        else:
                            noise.append(dedup.difference(lumas[first[k]], lumas[i]))
                    print(
                        f"| {codec} | {crf} | {'sigma 2' if grain else 'none'} | "
                        f"{max(noise):.2f} ({np.mean(noise):.2f}) | {min(mouth):.1f} | "
                        f"{min(limb):.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
