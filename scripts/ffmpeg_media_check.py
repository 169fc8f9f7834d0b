"""Files made by the ffmpeg program (not by our PyAV helpers), through the real `rife interpolate`
command with default options and a real model, checked as tests/test_media_matrix.py checks
its own: frame grid and count, duration, every track's offset to the video and its flags, the
kept picture properties. Needs the `ffmpeg` program; prints one line per file and a summary.

    python scripts/ffmpeg_media_check.py [--model v4.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import read_media  # noqa: E402

LAVFI_V = "testsrc2=size=160x96:rate={rate}:duration=2"
LAVFI_A = "sine=frequency=440:duration=2:sample_rate=48000"

# name: (rate, container args after the inputs, output file name)
CASES = {
    "mkv-h264-23.976-aac": ("24000/1001", ["-c:v", "libx264", "-c:a", "aac"], "a.mkv"),
    "webm-vp9-30-opus": (
        "30",
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
        "b.webm",
    ),
    "mkv-h264-60-aac": ("60", ["-c:v", "libx264", "-c:a", "aac"], "c.mkv"),
    "mkv-hevc10-24-aac": (
        "24",
        [
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p10le",
            "-x265-params",
            "log-level=error",
            "-c:a",
            "aac",
        ],
        "d.mkv",
    ),  # fmt: skip
    "mp4-h264-29.97-aac": ("30000/1001", ["-c:v", "libx264", "-c:a", "aac"], "e.mp4"),
    "mov-h264-59.94-pcm": ("60000/1001", ["-c:v", "libx264", "-c:a", "pcm_s16le"], "f.mov"),
    "ts-h264-25-mp2": ("25", ["-c:v", "libx264", "-c:a", "mp2", "-f", "mpegts"], "g.ts"),
    "ts-h264-50-ac3": ("50", ["-c:v", "libx264", "-c:a", "ac3", "-f", "mpegts"], "h.ts"),
    "avi-mpeg4-25-mp3": (
        "25",
        ["-c:v", "mpeg4", "-bf", "2", "-q:v", "3", "-c:a", "libmp3lame"],
        "i.avi",
    ),
    "mp4-rotated-90-phone": (
        "30",
        ["-c:v", "libx264", "-c:a", "aac", "-metadata:s:v:0", "rotate=90"],
        "j.mp4",
    ),
    "mkv-anamorphic-sar-16:11": (
        "25",
        ["-c:v", "libx264", "-vf", "setsar=16/11", "-c:a", "aac"],
        "k.mkv",
    ),
}


def make(ffmpeg: str, folder: Path, rate: str, args: list[str], name: str) -> Path:
    out = folder / name
    cmd = [ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", LAVFI_V.format(rate=rate)]
    cmd += ["-f", "lavfi", "-i", LAVFI_A, *args, str(out)]
    subprocess.run(cmd, check=True)
    if "rotate=90" in args:  # the rotate tag becomes a display matrix on a remux
        fixed = folder / f"r_{name}"
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-y", "-i", str(out), "-c", "copy",
             "-metadata:s:v:0", "rotate=90", str(fixed)],
            check=True,
        )  # fmt: skip
        out = fixed
    return out


def check(src: Path, model: str) -> tuple[bool, str]:
    before = read_media(src)
    run = subprocess.run(
        ["rife", "interpolate", "--exp", "1", "--model", model, "-q", "--json", str(src)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        return False, f"exit {run.returncode}: {run.stderr.strip().splitlines()[-1:]}"
    import json

    summary = json.loads(run.stdout.strip().splitlines()[-1])
    after = read_media(Path(summary["output"]))
    rate = 2 * (Fraction(summary["fps_in"]) if summary["fps_in"] else before.rate)
    problems = []
    if after.frames != 2 * before.frames:
        problems.append(f"{after.frames} frames for {before.frames}")
    t0 = after.times[0]
    worst = max(abs(t - t0 - Fraction(i) / rate) for i, t in enumerate(after.times))
    if worst > Fraction(1, 1000):
        problems.append(f"frames off the {float(rate):g} fps grid by {float(worst) * 1000:.1f} ms")
    if abs(after.duration - before.duration) > Fraction(2, 1000):
        problems.append(f"duration {float(after.duration):.3f} vs {float(before.duration):.3f}")
    for s, o in zip(before.tracks, after.tracks):
        if s[2] is not None and o[2] is not None:
            drift = abs(o[2] - max(s[2], 0))
            if drift > Fraction(33, 1000):
                problems.append(f"{s[0]} offset {float(o[2]):.3f} vs {float(s[2]):.3f}")
    if len(after.tracks) != len(before.tracks):
        problems.append(f"{len(after.tracks)} tracks for {len(before.tracks)}")
    if after.rotation != before.rotation:
        problems.append(f"rotation {after.rotation} vs {before.rotation}")
    if after.sar != before.sar:
        problems.append(f"SAR {after.sar} vs {before.sar}")
    bits = "10" in before.pix_fmt
    if bits != ("10" in after.pix_fmt):
        problems.append(f"pixel format {after.pix_fmt} vs {before.pix_fmt}")
    offsets = ", ".join(
        f"{t[0][0]}{float(t[2]) * 1000:+.0f}ms" for t in after.tracks if t[2] is not None
    )
    line = (
        f"{after.frames} frames at {float(rate):.3f} fps, {float(after.duration):.3f} s, "
        f"{after.pix_fmt}, rot {after.rotation}, sar {after.sar}, tracks {offsets} "
        f"(source {', '.join(f'{t[0][0]}{float(t[2]) * 1000:+.0f}ms' for t in before.tracks)})"
    )
    return not problems, line + ("" if not problems else " PROBLEMS: " + "; ".join(problems))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="v4.0")
    ap.add_argument("--keep", type=Path, help="make the files here and keep them")
    args = ap.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        print("needs the ffmpeg program (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rife-media-"))
    folder.mkdir(parents=True, exist_ok=True)
    ok = 0
    for name, (rate, cargs, fname) in CASES.items():
        src = make(ffmpeg, folder, rate, cargs, fname)
        good, line = check(src, args.model)
        ok += good
        print(f"{'ok  ' if good else 'FAIL'} {name}: {line}", flush=True)
    print(f"{ok} passed, {len(CASES) - ok} failed")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
