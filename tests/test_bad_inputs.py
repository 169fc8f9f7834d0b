"""Every bad input gets one line, a non-zero exit, no traceback, nothing under the final name, and
leaves the input untouched; random damage to a clip never hangs or crashes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from clips import blend_engine, decode, interpolate_blended, make_video, moving_frame

from rife_cli.cli import main
from rife_cli.errors import RifeError
from rife_cli.pipeline import interpolate_video


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(path):
    if path.is_dir():
        return sorted((p.name, digest(p)) for p in path.iterdir())
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def audio_only(path):
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        fr = av.AudioFrame.from_ndarray(
            np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
        )
        fr.sample_rate, fr.pts = 48000, 0
        c.mux(a.encode(fr))
        c.mux(a.encode(None))
    return path


def truncated_mp4(tmp_path):
    src = make_video(tmp_path / "whole.mp4", n=10)
    data = src.read_bytes()
    # MP4s written this way keep their index (moov) at the end: cut before it
    moov = data.find(b"moov")
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: moov - 4] if moov > 0 else data[: len(data) // 2])
    return p


def mixed_sizes(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    cv2.imwrite(str(d / "1.png"), moving_frame(0, 64, 48))
    cv2.imwrite(str(d / "2.png"), moving_frame(1, 80, 48))
    return d


def write(path, data):
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def mkdir(path):
    path.mkdir()
    return path


CASES = {
    "missing": (lambda t: t / "nope.mp4", [], 1, "no such file"),
    "empty dir": (lambda t: mkdir(t / "empty"), [], 1, "no images"),
    "text as mp4": (lambda t: write(t / "x.mp4", "hello\n" * 100), [], 1, "not a readable video"),
    "zero bytes": (lambda t: write(t / "z.mp4", b""), [], 1, "empty file"),
    "audio only": (lambda t: audio_only(t / "a.m4a"), [], 1, "no video stream"),
    "truncated index": (truncated_mp4, [], 1, "truncated.mp4"),
    "mixed sizes": (mixed_sizes, [], 1, "differ from the first image"),
    "parent is a file": (
        lambda t: make_video(t / "ok.mp4", n=3),
        ["-o", "{t}/ok.mp4/out.mp4"],
        1,
        "not a directory",
    ),
    "exp with fps": (
        lambda t: make_video(t / "ok.mp4", n=3),
        ["--exp", "1", "--fps", "60"],
        2,
        "exclude",
    ),
    "exp 0": (lambda t: make_video(t / "ok.mp4", n=3), ["--exp", "0"], 2, "--exp 0"),
    "fps below source": (
        lambda t: make_video(t / "ok.mp4", n=3),
        ["--fps", "12"],
        2,
        "below the source",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(tmp_path, name):
    make, extra, code, msg = CASES[name]
    src = make(tmp_path)
    extra = [a.replace("{t}", str(tmp_path)) for a in extra]
    before = digest(src)
    listing = sorted(p.name for p in tmp_path.iterdir())
    res = cli("interpolate", src, "-q", *extra)
    assert res.exit_code == code, res.output
    assert msg in res.output, res.output
    assert "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output
    assert digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written, nothing left


def test_not_writable_parent(tmp_path, monkeypatch):
    # Tests may run as root, who writes anywhere: stand in for the permission answer.
    src = make_video(tmp_path / "ok.mp4", n=3)
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("ro") else real(p, m))
    res = cli("interpolate", src, "-o", tmp_path / "ro" / "o.mp4", "-q")
    assert res.exit_code == 1 and "not writable" in res.output
    assert list((tmp_path / "ro").iterdir()) == []


def test_rgba_gray_16bit_sequences_work(tmp_path):
    for kind in ("rgba", "gray", "16bit"):
        d = tmp_path / kind
        d.mkdir()
        for i in range(3):
            img = moving_frame(i, 64, 48)
            if kind == "rgba":
                img = np.dstack([img, np.full((48, 64), 200, np.uint8)])
            elif kind == "gray":
                img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            else:
                img = img.astype(np.uint16) * 257
            cv2.imwrite(str(d / f"{i}.png"), img)
        s = interpolate_blended(d, tmp_path / f"{kind}_out", exp=1)
        assert s.frames_out == 5
        mid = cv2.imread(str(sorted((tmp_path / f"{kind}_out").iterdir())[1]), cv2.IMREAD_UNCHANGED)
        first = cv2.imread(str(d / "0.png"), cv2.IMREAD_UNCHANGED)
        assert mid.shape == first.shape and mid.dtype == first.dtype
        # and as video: channels are reduced to what the encoder takes
        v = interpolate_blended(
            d,
            tmp_path / f"{kind}.mkv",
            exp=1,
            codec="ffv1",
        )
        assert v.frames_out == 6


def test_single_frame_video(tmp_path):
    src = make_video(tmp_path / "one.mp4", n=1)
    s = interpolate_blended(src, tmp_path / "o.mp4", exp=1)
    assert s.frames_out == 2  # the one frame, held for its interval at twice the rate


def test_corrupt_middle_continues_with_count(tmp_path):
    """Two packets in the middle whose pictures are garbage (their container framing intact):
    the decoder rejects exactly those two, says so, and the rest is decoded; the output still
    lasts as long as the input."""
    src = make_video(tmp_path / "a.mkv", n=40, w=128, h=72)
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(packets) == 40
    for k in (10, 30):
        pos, size = packets[k]
        data[pos + 4 : pos + size] = b"\xff" * (size - 4)  # after the NAL unit's length
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    warnings = []
    s = interpolate_blended(bad, tmp_path / "o.mkv", exp=1, warn=warnings.append)
    assert (s.bad_packets, s.frames_in, s.frames_out) == (2, 38, 80)
    assert len(decode(tmp_path / "o.mkv")[0]) == 80
    assert [w for w in warnings if "corrupt packet skipped" in w] == warnings
    assert len(warnings) == 2 and all(str(bad) in w for w in warnings), warnings


def concatenated_sizes(tmp_path):
    """An MPEG-TS stream whose pictures change size mid-stream (as joined broadcast recordings
    do): 10 frames at 128x72, 6 at 96x64, 8 at 128x72, timestamps running on."""
    from fractions import Fraction

    data = b""
    for start, n, (w, h) in ((0, 10, (128, 72)), (10, 6, (96, 64)), (16, 8, (128, 72))):
        part = tmp_path / f"part{start}.ts"
        with av.open(str(part), "w", format="mpegts") as c:
            v = c.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = w, h, "yuv420p"
            v.codec_context.options = {"crf": "12", "preset": "ultrafast"}
            for i in range(start, start + n):
                f = av.VideoFrame.from_ndarray(moving_frame(i, w, h), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, 25)
                c.mux(v.encode(f))
            c.mux(v.encode(None))
        data += part.read_bytes()
        part.unlink()
    return write(tmp_path / "joined.ts", data)


def test_frames_of_another_size_are_scaled_counted_and_warned_at_each_change(tmp_path):
    src = concatenated_sizes(tmp_path)
    warnings = []
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", warn=warnings.append)
    assert (s.resized_frames, s.bad_packets, s.frames_in) == (6, 0, 24)
    assert s.frames_out == len(decode(tmp_path / "o.mkv")[0]) == 48  # every frame, at 50 fps
    assert len(warnings) == 2, warnings
    assert "from frame 10 (0.40 s) the picture is 96x64, scaled to 128x72" in warnings[0]
    assert "from frame 16 (0.64 s) the picture is 128x72 again" in warnings[1]
    res = cli("interpolate", src, "-o", tmp_path / "cli.mkv", "--json", "--model", "v4.0")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["resized_frames"], summary["bad_packets"]) == (6, 0)
    assert res.output.count("the picture is 96x64") == 1
    assert "6 frames of another size scaled to fit" in res.output


def run_with_timeout(fn, seconds):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "hang"
    return box


def test_fuzz_truncations_and_flips(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=12, w=64, h=48, audio=True)
    data = src.read_bytes()
    rng = random.Random(7)
    before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    for k in range(50):
        d = bytearray(data)
        if k % 2:
            d = d[: rng.randrange(1, len(d))]
        else:
            for _ in range(rng.randrange(1, 40)):
                i = rng.randrange(len(d))
                d[i] = rng.randrange(256)
        p = tmp_path / f"f{k}.mp4"
        p.write_bytes(bytes(d))
        out = tmp_path / f"o{k}.mp4"
        box = run_with_timeout(
            lambda p=p, out=out: interpolate_blended(p, out, exp=1),
            60,
        )
        if "error" in box:
            assert isinstance(box["error"], RifeError), repr(box["error"])
            assert not out.exists()
        p.unlink()
        out.unlink(missing_ok=True)
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == []
    assert threading.active_count() == before
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


def test_batch_of_50_no_leaks_and_skip_existing(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    src = make_video(d / "v00.mp4", n=3, w=32, h=32)
    for i in range(1, 50):
        (d / f"v{i:02d}.mp4").write_bytes(src.read_bytes())
    (d / "v50.mp4").write_text("broken")
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    res = cli(
        "interpolate",
        d,
        "-o",
        tmp_path / "out",
        "-q",
        "--model",
        "v4.0",
        "--precision",
        "fp32",
        "--scene-threshold",
        "0",
    )
    assert res.exit_code == 3, res.output  # some failed
    assert len(list((tmp_path / "out").iterdir())) == 50
    assert "failed" in res.output and "v50.mp4" in res.output
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    assert threading.active_count() == threads_before
    (d / "v50.mp4").unlink()
    again = cli(
        "interpolate", d, "-o", tmp_path / "out", "-q", "--skip-existing", "--model", "v4.0"
    )
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") == 50


def test_out_of_memory_suggests_smaller_work(tmp_path, monkeypatch):
    src = make_video(tmp_path / "a.mp4", n=4)
    engine = blend_engine()

    def no_memory(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB"
        )

    monkeypatch.setattr(engine, "_forward_net", no_memory)
    with pytest.raises(RifeError, match="out of memory.*--scale 0.5 or a smaller --batch-size"):
        interpolate_video(src, tmp_path / "o.mp4", engine_factory=lambda n: engine, exp=1)
    assert not (tmp_path / "o.mp4").exists()


def test_no_child_processes_left(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=4)
    interpolate_blended(src, tmp_path / "o.mp4", exp=1)
    children = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            children += f.read().split()

    def ours(pid: str) -> bool:
        # multiprocessing's resource tracker, once started (by --devices tests in this process),
        # lives as long as its parent by design: not a process of a run
        try:
            return (
                "multiprocessing.resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
            )
        except OSError:
            return False  # already gone

    assert [c for c in children if ours(c)] == []
