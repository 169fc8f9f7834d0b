"""Scene-cut detectors against a labelled set: precision and recall, and what they mistake for cuts.

The set is made here from what this machine has: the real frames in ../shared/golden (three
scenes, 448x256, upscaled 3x to pan over) and the `ffmpeg` program's generated sources
(mandelbrot, life, cellauto, testsrc2). Shots are windows moving over a real frame (still shots, slow pans,
fast pans of 16-40 px a frame, camera shake of +-6-16 px, zooms) or a generated source's own
motion; they are joined by hard cuts (some between two windows on the same real frame), cross
dissolves (4-12 frames) and fades through black, with single-frame flashes (white, black or a
70 % white-out) inside shots. The clip is encoded with x264 (CRF 20), decoded as rife reads it,
and every consecutive pair of frames is labelled: cut, or not a cut (flash, fade, fast pan,
shake, ...). Only hard cuts are positives: a flash, a fade or a dissolve is one scene, and
interpolating through it is what the issue asks for.

    python scripts/scene_eval.py [--shots 60] [--seed 1] [--save set.mkv]

Needs the `ffmpeg` program (for the generated sources) and, for its detectors, `scenedetect`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rife_cli.bench import write_clip
from rife_cli.pipeline import scenes
from rife_cli.video.source import SourceFrame, probe, read_frames

GOLDEN = ROOT.parent / "shared" / "golden"
W, H = 480, 270
RATE = 24


def lavfi(name: str, n: int, offset: float, seed: int) -> list[np.ndarray]:
    """n frames of one of ffmpeg's generated sources, from `offset` seconds in (`seed` fills the
    cellular automata's first grid: their default seed is random, the set would change)."""
    spec = {
        "mandelbrot": f"mandelbrot=s={W}x{H}:r={RATE}",
        "life": f"life=s={W}x{H}:r={RATE}:mold=10:ratio=0.3:death_color=#203040:life_color=#e0c080:seed={seed}",
        "cellauto": f"cellauto=s={W}x{H}:r={RATE}:rule=110:seed={seed}",
        "testsrc2": f"testsrc2=s={W}x{H}:r={RATE}",
    }[name]
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", spec, "-ss", f"{offset:.3f}"]
        + ["-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3))


def window(big: np.ndarray, cx: float, cy: float, zoom: float = 1.0) -> np.ndarray:
    """A W x H view of `big` centred at (cx, cy), `zoom` times closer (sub-pixel)."""
    m = np.float32([[1 / zoom, 0, cx - W / (2 * zoom)], [0, 1 / zoom, cy - H / (2 * zoom)]])
    return cv2.warpAffine(
        big, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )


def bounce(v: float, lo: float, hi: float) -> float:
    u = (v - lo) % (2 * (hi - lo))
    return lo + (u if u <= hi - lo else 2 * (hi - lo) - u)


def camera_shot(big, kind: str, n: int, rng) -> list[np.ndarray]:
    bh, bw = big.shape[:2]
    cx, cy = rng.uniform(W / 2 + 40, bw - W / 2 - 40), rng.uniform(H / 2 + 30, bh - H / 2 - 30)
    angle = rng.uniform(0, 2 * np.pi)
    speed = {"pan-slow": rng.uniform(1, 4), "pan-fast": rng.uniform(16, 40)}.get(kind, 0.0)
    dx, dy = speed * np.cos(angle), speed * np.sin(angle) * 0.5
    amp = rng.uniform(6, 16)
    frames, zoom = [], 1.0
    for i in range(n):
        x, y = cx + dx * i, cy + dy * i
        if kind == "shake":
            x, y = x + rng.uniform(-amp, amp), y + rng.uniform(-amp, amp)
        if kind == "zoom":
            zoom *= 1.02
        # bounce off the edges of the big frame rather than run out of it
        frames.append(window(big, bounce(x, W / 2, bw - W / 2), bounce(y, H / 2, bh - H / 2), zoom))
    return frames


def build(shots: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Frames and, for each pair (i - 1, i), its label ('' for frame 0)."""
    rng = np.random.default_rng(seed)
    reals = [
        cv2.resize(
            cv2.imread(str(GOLDEN / p / "frame0.png")),
            None,
            fx=3,
            fy=3,
            interpolation=cv2.INTER_CUBIC,
        )
        for p in ("I0", "I1", "I2")
    ]
    kinds = ["static", "pan-slow", "pan-fast", "shake", "zoom", "synthetic"]
    frames: list[np.ndarray] = []
    labels: list[str] = []
    last_real = None
    for s in range(shots):
        kind = kinds[int(rng.integers(len(kinds)))]
        n = int(rng.integers(6, 41))  # action scenes cut every quarter second
        if kind == "synthetic":
            src = ["mandelbrot", "life", "cellauto", "testsrc2"][int(rng.integers(4))]
            shot = lavfi(src, n, float(rng.uniform(0, 20)), int(rng.integers(1 << 31)))
        else:
            # every third real shot is another view of the frame before: a cut within one scene
            r = last_real if (last_real is not None and s % 3 == 0) else int(rng.integers(3))
            last_real = r
            shot = camera_shot(reals[r], kind, n, rng)
        shot_labels = [kind] * n
        # a single-frame flash inside some shots
        if n > 12 and rng.random() < 0.35:
            k = int(rng.integers(3, n - 3))
            style = rng.integers(3)
            if style == 0:
                shot[k] = np.full_like(shot[k], 255)
            elif style == 1:
                shot[k] = np.zeros_like(shot[k])
            else:
                shot[k] = (shot[k] * 0.3 + 255 * 0.7).astype(np.uint8)
            shot_labels[k] = shot_labels[k + 1] = "flash"
        if not frames:
            frames, labels = shot, [""] + shot_labels[1:]
            prev_n = n
            continue
        most = min(n, prev_n) - 2  # a transition stays inside the two shots it joins
        prev_n = n
        how = rng.random()
        if how < 0.6:  # hard cut
            frames += shot
            labels += ["cut"] + shot_labels[1:]
        elif how < 0.8:  # cross dissolve of m frames
            m = min(int(rng.integers(4, 13)), most)
            for j in range(m):
                a = (j + 1) / (m + 1)
                frames[-m + j] = cv2.addWeighted(frames[-m + j], 1 - a, shot[j], a, 0)
                labels[-m + j] = "fade"
            frames += shot[m:]
            labels += ["fade"] + shot_labels[m + 1 :]
        else:  # fade out to black, fade in from black
            m = min(int(rng.integers(4, 9)), most)
            for j in range(m):
                frames[-m + j] = (frames[-m + j] * (1 - (j + 1) / m)).astype(np.uint8)
                labels[-m + j] = "fade"
            for j in range(m):
                shot[j] = (shot[j] * (j / m)).astype(np.uint8)
                shot_labels[j] = "fade"
            frames += shot
            labels += ["fade"] + shot_labels[1:]
            if m + 1 < len(shot_labels):
                labels[len(frames) - len(shot) + m] = "fade"
    return frames, labels


def encode(path: Path, frames: list[np.ndarray]) -> None:
    write_clip(path, frames, Fraction(RATE), crf=20, preset="fast")


# ----- detectors: each takes the decoded BGR frames, returns the set of i where (i - 1, i) is a cut


def ssim_pairs(frames) -> set[int]:
    thumbs = [scenes.thumbnail(f) for f in frames]
    return {i for i in range(1, len(frames)) if scenes.is_cut(thumbs[i - 1], thumbs[i], 0.2)}


def pyscenedetect(make) -> callable:
    def run(frames) -> set[int]:
        from scenedetect import FrameTimecode

        det = make()
        cuts = []
        for i, f in enumerate(frames):
            cuts += det.process_frame(FrameTimecode(i, fps=float(RATE)), f)
        cuts += det.post_process(FrameTimecode(len(frames) - 1, fps=float(RATE)))
        return {c.frame_num for c in cuts}

    return run


def ours(threshold: float) -> callable:
    """rife's scene stage itself, as the pipeline runs it (rife_cli.pipeline.scenes.SceneStage)."""

    def run(frames) -> set[int]:
        stream = (SourceFrame(i, Fraction(i, RATE), None, f) for i, f in enumerate(frames))
        tagged = list(scenes.SceneStage(threshold).filter(stream))
        cuts = {f.index for f in tagged if f.edge == scenes.CUT}
        return cuts, {f.index for f in tagged if f.edge in scenes.HARD}

    return run


def detectors() -> dict[str, callable]:
    out = {"ssim < 0.2 (today)": ssim_pairs}
    try:
        from scenedetect import AdaptiveDetector, ContentDetector

        out["PySceneDetect content (defaults)"] = pyscenedetect(ContentDetector)
        out["PySceneDetect content, min_scene_len 1"] = pyscenedetect(
            lambda: ContentDetector(min_scene_len=1)
        )
        out["PySceneDetect adaptive (defaults)"] = pyscenedetect(AdaptiveDetector)
        out["PySceneDetect adaptive, min_scene_len 1"] = pyscenedetect(
            lambda: AdaptiveDetector(min_scene_len=1)
        )
    except ImportError:
        print("scenedetect is not installed: its detectors are left out", file=sys.stderr)
    out[f"rife: aligned SSIM < {scenes.DEFAULT_THRESHOLD}, flash and fade rules"] = ours(
        scenes.DEFAULT_THRESHOLD
    )
    out["rife, --scene-threshold 0.4"] = ours(0.4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--save", type=Path, default=None, help="keep the clip and its labels here")
    ap.add_argument("--only", default="", help="run only the detectors whose name has this")
    args = ap.parse_args()
    frames, labels = build(args.shots, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.save or Path(tmp) / "set.mkv"
        encode(path, frames)
        if args.save:
            path.with_suffix(".json").write_text(json.dumps(labels))
        decoded = [f.image for f in read_frames(probe(path))]
    assert len(decoded) == len(labels)
    counts = Counter(labels[1:])
    cuts = {i for i, lab in enumerate(labels) if lab == "cut"}
    print(
        f"{len(decoded)} frames, {len(decoded) - 1} pairs: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    kinds = ["flash", "fade", "pan-fast", "shake", "zoom", "pan-slow", "static", "synthetic"]
    print(
        "| detector | precision | recall | F1 | flash pairs not blended | "
        + " | ".join(f"false cuts: {k}" for k in kinds)
        + " |"
    )
    print("| --- " * (5 + len(kinds)) + "|")
    for name, det in detectors().items():
        if args.only not in name:
            continue
        found = det(decoded)
        found, hard = found if isinstance(found, tuple) else (found, found)
        flashes = {i for i, lab in enumerate(labels) if lab == "flash"}
        tp = len(found & cuts)
        p = tp / len(found) if found else 0.0
        r = tp / len(cuts)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        fp = Counter(labels[i] for i in found - cuts)
        print(
            f"| {name} | {p:.3f} | {r:.3f} | {f1:.3f} | {len(hard & flashes)}/{len(flashes)} | "
            + " | ".join(f"{fp.get(k, 0)}/{counts.get(k, 0)}" for k in kinds)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
