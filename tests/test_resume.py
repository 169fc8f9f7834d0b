"""Resume after an interruption of any kind: the result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from clips import decode, interpolate_blended, make_video

from rife_cli.errors import Interrupted, UsageError
from rife_cli.pipeline import TMP_TAG, StopRequest
from rife_cli.pipeline.resume import work_dir_for


def run(src, out, **kw):
    kw.setdefault("codec", "ffv1")
    kw.setdefault("segment_frames", 6)
    return interpolate_blended(src, out, **kw)


def same_video(a, b):
    fa, ta, _ = decode(a)
    fb, tb, _ = decode(b)
    assert ta == tb
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert np.array_equal(x, y)


def interrupt_after(src, out, frames: int, exit_code: int = 130) -> Interrupted:
    """Run with --exp 1 and ask it to stop (as a signal would) once `frames` are out."""
    stop = StopRequest()

    def progress(done):
        if done == frames:
            stop.request(exit_code)

    with pytest.raises(Interrupted) as exc:
        run(src, out, exp=1, stop=stop, progress=progress)
    return exc.value


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "a.mkv", n=30, codec="ffv1", audio=True)


def test_stop_then_resume_equals_uninterrupted(tmp_path, clip):
    full = run(clip, tmp_path / "full.mkv", exp=1)
    assert interrupt_after(clip, tmp_path / "out.mkv", 20, exit_code=143).exit_code == 143
    assert not (tmp_path / "out.mkv").exists()
    journal = json.loads((work_dir_for(tmp_path / "out.mkv") / "journal.json").read_text())
    assert journal["segments"] and sum(s["n_out"] for s in journal["segments"]) >= 20

    done = []
    resumed = run(clip, tmp_path / "out.mkv", exp=1, resume=True, progress=done.append)
    assert resumed.frames_out == full.frames_out == 60
    assert done[0] > 20  # counting went on from the journal: finished segments were not redone
    same_video(tmp_path / "full.mkv", tmp_path / "out.mkv")
    assert decode(tmp_path / "out.mkv")[2]["audio"][0][0] == "aac"
    assert not work_dir_for(tmp_path / "out.mkv").exists()


def test_journal_of_other_options_is_refused(tmp_path, clip):
    interrupt_after(clip, tmp_path / "out.mkv", 14)
    with pytest.raises(UsageError, match="other options"):
        run(clip, tmp_path / "out.mkv", exp=1, resume=True, scene_threshold=0.5)
    s = run(clip, tmp_path / "out.mkv", exp=1, resume=True, scene_threshold=0.5, force=True)
    assert s.frames_out == 60


def test_without_resume_leftovers_are_cleaned(tmp_path, clip):
    interrupt_after(clip, tmp_path / "out.mkv", 14)
    assert work_dir_for(tmp_path / "out.mkv").exists()
    run(clip, tmp_path / "out.mkv", exp=1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_disk_error_keeps_resumable_state(tmp_path, clip, monkeypatch):
    from rife_cli.errors import OutputError
    from rife_cli.video import sink as sink_mod

    real = sink_mod.VideoSink.write
    calls = {"n": 0}

    def full_disk(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 25:
            raise OutputError(f"{self.path}: write failed (No space left on device)")
        return real(self, *a, **k)

    monkeypatch.setattr(sink_mod.VideoSink, "write", full_disk)
    with pytest.raises(OutputError, match="No space"):
        run(clip, tmp_path / "out.mkv", exp=1)
    monkeypatch.setattr(sink_mod.VideoSink, "write", real)
    assert not (tmp_path / "out.mkv").exists()
    s = run(clip, tmp_path / "out.mkv", exp=1, resume=True)
    assert s.frames_out == 60


def _cli(args, env_extra=None):
    env = dict(os.environ, RIFE_SEGMENT_FRAMES="6", **(env_extra or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "rife_cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig,code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_killed_process_resumes(tmp_path, sig, code):
    src = make_video(tmp_path / "a.mp4", n=100, w=96, h=64)
    out = tmp_path / "out.mkv"
    args = ["interpolate", src, "-o", out, "--codec", "ffv1", "-q", "--precision", "fp32"]
    proc = _cli(args)
    journal = work_dir_for(out) / "journal.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(json.loads(journal.read_text())["segments"]) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not out.exists()
    resumed = _cli(args + ["--resume", "--json"])
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming" in err
    assert json.loads(stdout)["frames_out"] == 200
    whole = _cli(
        [
            "interpolate",
            src,
            "-o",
            tmp_path / "whole.mkv",
            "--codec",
            "ffv1",
            "-q",
            "--precision",
            "fp32",
        ]
    )
    whole.communicate(timeout=300)
    same_video(tmp_path / "whole.mkv", out)


def test_full_disk_is_an_output_error():
    """What FFmpeg raises when the disk is full becomes a one-line OutputError (here: /dev/full)."""
    from fractions import Fraction
    from pathlib import Path

    from rife_cli.errors import OutputError
    from rife_cli.video.sink import EncodeOptions, VideoSink
    from rife_cli.video.source import Colour

    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(OutputError, match="No space left"):
        sink = VideoSink(
            Path("/dev/full"),
            64,
            64,
            Fraction(25),
            Colour(6, 1, 6, 6, False),
            8,
            EncodeOptions("ffv1"),
            "matroska",
        )
        try:
            for i in range(50):
                sink.write(i, frame, None)
            sink.close()
        finally:
            sink.abort()


def test_memory_flat_over_a_long_clip(tmp_path):
    """Bounded queues: resident memory after 3000 frames is what it was after the first 500."""
    src = make_video(tmp_path / "long.mkv", n=1500, w=64, h=48, codec="ffv1")
    marks = {}

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    def progress(done):
        if done in (500, 2990):
            marks[done] = rss_kib()

    interpolate_blended(
        src,
        tmp_path / "o.mkv",
        exp=1,
        codec="ffv1",
        progress=progress,
        queue_bytes=8 << 20,
    )
    assert marks[2990] - marks[500] < 40 * 1024, marks  # under 40 MiB of growth


def test_interrupted_png_run_says_to_rerun_not_resume(tmp_path):
    """--resume is refused for PNG output, so an interrupted PNG run must not point to it: the
    message says to run the same command again, and that works."""
    import cv2
    from clips import moving_frame

    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(20):
        cv2.imwrite(str(seq / f"{i}.png"), moving_frame(i, 64, 48))
    stop = StopRequest()

    def progress(done):
        if done == 10:
            stop.request(130)

    with pytest.raises(Interrupted) as exc:
        interpolate_blended(seq, tmp_path / "out", png=True, exp=1, stop=stop, progress=progress)
    msg = str(exc.value)
    assert "--resume" not in msg and "run the same command again" in msg, msg
    assert "PNG output restarts" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # nothing half-written
    with pytest.raises(UsageError, match="--resume works for video outputs"):
        interpolate_blended(seq, tmp_path / "out", png=True, exp=1, resume=True)
    s = interpolate_blended(seq, tmp_path / "out", png=True, exp=1)  # what the message says
    assert s.frames_out == 39 == len(list((tmp_path / "out").iterdir()))


# A `rife interpolate` whose second batch never finishes (as a long batch on a slow device), that
# sends itself Ctrl-C twice once that batch is being made: the second must quit at once.
SECOND_CTRL_C = r"""
import os, signal, sys, threading, time

sys.path.insert(0, sys.argv[3])
from clips import BlendNet

from rife_cli import cli
from rife_cli.engine import Interpolator

# two lanes: two batches in flight, as on CUDA or a CPU with two cores or more
engine = Interpolator(
    model="blend", device="cpu", precision="fp32", network=BlendNet(), batch_size=1, lanes=2
)
real_make, calls, entered, never = engine.make_unchecked, [], threading.Event(), threading.Event()


def make(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        entered.set()
        never.wait()
    return real_make(*args, **kwargs)


engine.make_unchecked = make
cli.build_interpolator = lambda *args, **kwargs: engine
stops, install = [], cli._install_stop_handlers
cli._install_stop_handlers = lambda: stops.append(install()) or stops[-1]


def ctrl_c_twice():
    entered.wait()
    os.kill(os.getpid(), signal.SIGINT)
    while not stops[0].is_set():
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=ctrl_c_twice, daemon=True).start()
cli.main(["interpolate", sys.argv[1], "-o", sys.argv[2], "-q", "--codec", "ffv1"])
"""


def test_second_ctrl_c_quits_at_once(tmp_path):
    """The first Ctrl-C waits for the current batch; the second must not: before, the batch
    workers were waited for (and Python's exit joined them), so it hung as long as the batch."""
    from pathlib import Path

    src = make_video(tmp_path / "a.mkv", n=20, w=64, h=48, codec="ffv1")
    out = tmp_path / "o.mkv"
    tests = Path(__file__).parent
    proc = subprocess.Popen(
        [sys.executable, "-c", SECOND_CTRL_C, str(src), str(out), str(tests)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=90)  # a hang guard: the batch never finishes
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the second Ctrl-C did not quit; stderr: {err}")
    assert proc.returncode == 130, err
    assert "stopping after the current pair" in err and "interrupted at once" in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if TMP_TAG in p.name] == []


def test_a_stopped_pipe_run_says_it_cannot_resume_and_keeps_nothing(tmp_path):
    """Standard input cannot be read again from where it stopped: the message promised a
    --resume that was then refused, and the segments stayed in a folder nothing could use."""
    src = make_video(tmp_path / "a.mkv", n=100, w=96, h=64)
    out = tmp_path / "out.mkv"
    env = {**os.environ, "RIFE_SEGMENT_FRAMES": "8", "RIFE_SEGMENT_SECONDS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rife_cli", "interpolate", "-", "-o", str(out), "--codec", "ffv1",
         "-q"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=False, env=env,
    )  # fmt: skip
    proc.stdin.write(src.read_bytes())
    proc.stdin.close()
    journal = work_dir_for(out) / "journal.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(json.loads(journal.read_text())["segments"]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    assert b"a pipe cannot be resumed: run the command again" in err
    assert b"--resume" not in err and b"Traceback" not in err
    assert not work_dir_for(out).exists() and not out.exists()
