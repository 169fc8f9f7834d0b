"""The last stop points of a long run: a SIGKILL during a journal write and during the final join,
a full disk during the join, the journal and a PNG sequence (real ENOSPC: the file is a link to
/dev/full), an input still being copied, a half-written last packet, and a batch summary of
names holding control characters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from clips import decode, interpolate_blended, make_video

from rife_cli.errors import OutputError
from rife_cli.pipeline import TMP_TAG
from rife_cli.pipeline.resume import JOURNAL, work_dir_for
from rife_cli.pipeline.run import part_path

TESTS = Path(__file__).parent
FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full here")

# One lossless run of the stand-in network in a child process, which the hook may kill.
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from clips import interpolate_blended
s = interpolate_blended({src!r}, {out!r}, codec="ffv1", segment_frames=6, resume={resume})
print(s.frames_out)
"""


def child(src: Path, out: Path, resume: bool = False, kill_at: str | None = None):
    env = dict(os.environ)
    env.pop("RIFE_TEST_KILL_AT", None)
    if kill_at:
        env["RIFE_TEST_KILL_AT"] = kill_at
    code = CHILD.format(tests=str(TESTS), src=str(src), out=str(out), resume=resume)
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def same_video(a: Path, b: Path) -> None:
    fa, ta, ia = decode(a)
    fb, tb, ib = decode(b)
    assert ta == tb and len(fa) == len(fb) and ia["audio"] == ib["audio"]
    for x, y in zip(fa, fb):
        assert np.array_equal(x, y)


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "a.mkv", n=30, w=64, h=48, codec="ffv1", audio=True)


@pytest.fixture
def whole(tmp_path, clip):
    """The uninterrupted lossless run, to compare resumed ones with."""
    out = tmp_path / "whole.mkv"
    assert child(clip, out).returncode == 0
    return out


@pytest.mark.parametrize("stage", ["journal:3", "journal:5", "join"])
def test_sigkill_at_each_stage_then_resume_equals_an_uninterrupted_run(
    tmp_path, clip, whole, stage
):
    out = tmp_path / "out.mkv"
    killed = child(clip, out, kill_at=stage)
    assert killed.returncode == -9, killed.stderr
    folder = work_dir_for(out)
    journal = json.loads((folder / JOURNAL).read_text())  # whole: the last one written
    done = len(journal["segments"])
    assert not out.exists()
    if stage == "join":
        assert part_path(out).exists()  # the output, half written
        assert sum(s["n_out"] for s in journal["segments"]) == 60  # every segment finished
    else:
        n = int(stage.split(":")[1])
        assert done == n - 2  # the first write is the fresh journal; the n-th was cut off
        assert (folder / (JOURNAL + ".tmp")).exists()
    resumed = child(clip, out, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "60"
    same_video(whole, out)
    assert not folder.exists() and not part_path(out).exists()


@needs_dev_full
def test_full_disk_during_the_join_keeps_the_segments(tmp_path, clip, whole):
    out = tmp_path / "out.mkv"

    def progress(done):
        if done == 60:  # every frame made: only the join is left, into a full disk
            part_path(out).symlink_to(FULL)

    with pytest.raises(OutputError) as exc:
        interpolate_blended(clip, out, codec="ffv1", segment_frames=6, progress=progress)
    msg = str(exc.value)
    assert "No space left on device" in msg and "--resume" in msg and "\n" not in msg
    assert not out.exists() and not part_path(out).exists()
    journal = json.loads((work_dir_for(out) / JOURNAL).read_text())
    assert sum(s["n_out"] for s in journal["segments"]) == 60
    s = interpolate_blended(clip, out, codec="ffv1", segment_frames=6, resume=True)
    assert s.frames_out == 60
    same_video(whole, out)


@needs_dev_full
def test_full_disk_during_a_journal_write_keeps_the_last_journal(tmp_path, clip, whole):
    out = tmp_path / "out.mkv"
    tmp = work_dir_for(out) / (JOURNAL + ".tmp")

    armed = []

    def progress(done):
        if done >= 20 and not armed:  # the next journal write meets a full disk
            try:
                tmp.symlink_to(FULL)
                armed.append(done)
            except FileExistsError:
                pass  # the writer is saving the journal right now: at the next frame

    with pytest.raises(OutputError) as exc:
        interpolate_blended(clip, out, codec="ffv1", segment_frames=6, progress=progress)
    msg = str(exc.value)
    assert "cannot write the resume journal (No space left on device)" in msg
    assert "\n" not in msg
    journal = json.loads((work_dir_for(out) / JOURNAL).read_text())
    assert len(journal["segments"]) <= 3  # those closed before the disk filled (the writer lags)
    s = interpolate_blended(clip, out, codec="ffv1", segment_frames=6, resume=True)
    assert s.frames_out == 60
    same_video(whole, out)


@needs_dev_full
def test_full_disk_during_a_png_sequence_is_one_clean_line(tmp_path, clip):
    out = tmp_path / "frames"
    part = part_path(out)

    def progress(done):
        if done == 10:
            (part / ".00000014.png.part").symlink_to(FULL)

    with pytest.raises(OutputError) as exc:
        interpolate_blended(clip, out, png=True, progress=progress)
    msg = str(exc.value)
    assert "00000014.png: cannot write (No space left on device)" in msg and "\n" not in msg
    assert not out.exists() and not part.exists()
    assert [p.name for p in tmp_path.iterdir() if TMP_TAG in p.name] == []
    # and through the command line: one line, exit 1
    from rife_cli import cli as cli_mod
    from rife_cli.pipeline import run as run_mod  # where the command takes it from

    made = run_mod.interpolate_video

    def full(*args, **kwargs):
        kwargs["progress"] = progress
        return made(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_mod, "interpolate_video", full)
        res = CliRunner().invoke(
            cli_mod.main, ["interpolate", str(clip), "-o", str(out), "--png", "--model", "v4.0"]
        )
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("rife: error: ") and "No space left on device" in lines[-1]
    assert "Traceback" not in res.output


def _ts(tmp_path: Path, n: int = 80) -> Path:
    return make_video(tmp_path / "whole.ts", n=n, w=96, h=64)


def _packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]


def test_a_half_written_last_packet_is_left_out_with_a_warning(tmp_path):
    whole = _ts(tmp_path)
    data = whole.read_bytes()
    frames, _, _ = decode(whole)
    packets = _packets(whole)
    # cut inside a late packet, where the MPEG-TS demuxer hands on the part it has
    cut = None
    for pos, size in reversed(packets[40:-1]):
        for at in range(pos + 188, pos + size, 64):
            part = tmp_path / "cut.ts"
            part.write_bytes(data[:at])
            got = _packets(part)
            if got and got[-1][1] != packets[len(got) - 1][1]:
                cut = len(got)
                break
        if cut:
            break
    assert cut, "no cut point gave a partial packet"
    warnings: list[str] = []
    s = interpolate_blended(part, tmp_path / "o.mkv", codec="ffv1", warn=warnings.append)
    said = [w for w in warnings if "incomplete" in w]
    assert len(said) == 1 and "the last 1 picture(s) are incomplete" in said[0], warnings
    assert s.frames_in == cut - 1  # every whole picture, and not the half one
    out, _, _ = decode(tmp_path / "o.mkv")
    for i in range(s.frames_in):  # source frames pass through: the whole file's own pictures
        assert np.array_equal(out[2 * i], frames[i]), i


def test_an_input_still_being_copied_is_taken_as_read_with_one_warning(tmp_path):
    whole = _ts(tmp_path, n=300)
    data = whole.read_bytes()
    growing = tmp_path / "copying.ts"
    growing.write_bytes(data[: len(data) // 4])
    stop = threading.Event()

    def copy_on():
        with open(growing, "ab") as f:
            at = len(data) // 4
            while at < len(data) and not stop.is_set():
                f.write(data[at : at + 4096])
                f.flush()
                at += 4096
                time.sleep(0.01)

    warnings: list[str] = []
    started = threading.Event()

    def progress(done):
        if not started.is_set():
            started.set()
            copier.start()  # the copy goes on once reading has begun

    copier = threading.Thread(target=copy_on)
    try:
        s = interpolate_blended(
            growing, tmp_path / "o.mkv", codec="ffv1", warn=warnings.append, progress=progress
        )
    finally:
        stop.set()
        if copier.is_alive() or started.is_set():
            copier.join()
    grew = [w for w in warnings if "grew while it was read" in w]
    assert len(grew) == 1 and f"taken as it was read: {s.frames_in} frames" in grew[0], warnings
    assert not [w for w in warnings if "could not be read" in w]
    frames, _, _ = decode(whole)
    out, _, _ = decode(tmp_path / "o.mkv")
    assert 0 < s.frames_in <= 300
    for i in range(s.frames_in):
        assert np.array_equal(out[2 * i], frames[i]), i


def test_a_batch_summary_escapes_control_characters_in_names(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a\nb.mp4", "c\x1b[31m.mp4", "plain.mp4"):
        make_video(folder / name, n=3, w=64, h=48)
    from rife_cli.cli import main

    res = CliRunner().invoke(
        main,
        ["interpolate", str(folder), "-o", str(tmp_path / "out"), "-q", "--model", "v4.0"],
    )
    assert res.exit_code == 0, res.output
    table = res.output.splitlines()[-3:]
    assert [ln.split("  ")[0].rsplit("/", 1)[-1].strip() for ln in table] == [
        "a\\nb.mp4",
        "c\\x1b[31m.mp4",
        "plain.mp4",
    ], res.output
    assert "\x1b" not in "\n".join(table)
