"""Pipes and URLs: `rife interpolate -` reading standard input, `-o -` writing standard output,
http(s) inputs, and what cannot work on a pipe refused. Real subprocesses; media made with PyAV."""

from __future__ import annotations

import functools
import http.server
import io
import os
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest
from clips import blend_engine
from media import FORMATS, Clip, Track, make_clip

from rife_cli.errors import InputError
from rife_cli.pipeline import interpolate_video

FORMATS.setdefault(".nut", "nut")
TIMEOUT = 240  # seconds: a hung pipe fails the test instead of the suite


def rife(*args: str, stdin: bytes | None = None, cwd=None, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rife_cli", "interpolate", *args, "--model", "v3.6", "-q"]
    env = {**os.environ, **(env or {})}
    return subprocess.run(
        cmd, input=stdin, capture_output=True, timeout=TIMEOUT, check=False, cwd=cwd, env=env
    )


def read_stream(data: bytes):
    """(frame times, audio tracks' (codec, start - video start)) of a stream read from bytes."""
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        times = [Fraction(f.pts) * v.time_base for f in c.decode(v)]
    with av.open(io.BytesIO(data)) as c:
        audio = []
        for a in c.streams.audio:
            first = next(p for p in c.demux(a) if p.size and p.pts is not None)
            audio.append((a.codec_context.name, Fraction(first.pts) * a.time_base - times[0]))
    return times, audio


@pytest.mark.parametrize(
    "ext,fmt",
    [
        (".mkv", "matroska"),
        # their segments are made in Matroska: written alone in NUT or TS, an x264 segment's
        # video moved 2 frames later (it cannot start at a negative decoding time)
        (".ts", "mpegts"),
        (".nut", "nut"),
    ],
)
def test_a_piped_stream_comes_out_doubled_with_its_audio_in_sync(tmp_path, ext, fmt):
    src = make_clip(tmp_path / f"in{ext}", Clip(ext, rate=Fraction(25), n=8, audio=[Track()]))
    args = ["-", "-o", "-", "--exp", "1"] + ([] if fmt == "matroska" else ["--format", fmt])
    # in three segments: joints in NUT failed outright when its segments were NUT
    r = rife(*args, stdin=src.read_bytes(), env={"RIFE_SEGMENT_FRAMES": "6"})
    assert r.returncode == 0, r.stderr.decode()
    times, audio = read_stream(r.stdout)
    assert len(times) == 16
    # every frame on the 50 fps grid (Matroska: to the millisecond, MPEG-TS: 90 kHz ticks)
    assert all(
        abs(t - times[0] - Fraction(i, 50)) <= Fraction(1, 1000) for i, t in enumerate(times)
    )
    assert [a[0] for a in audio] == ["aac"]
    # the source's offset of audio to video kept, within one audio frame (the output starts at
    # the first video frame: audio that starts before it starts with it)
    _, source_audio = read_stream(src.read_bytes())
    offset = max(source_audio[0][1], Fraction(0))
    assert abs(audio[0][1] - offset) <= Fraction(1024, 48000) + Fraction(1, 1000), (audio, offset)
    assert b"Traceback" not in r.stderr and not list(tmp_path.glob(".*rife*"))


def test_yuv4mpegpipe_is_raw_frames_for_another_encoder_without_audio(tmp_path):
    src = make_clip(tmp_path / "in.mp4", Clip(".mp4", rate=Fraction(24000, 1001), n=6,
                                              audio=[Track()]))  # fmt: skip
    r = rife(str(src), "-o", "-", "--format", "yuv4mpegpipe")
    assert r.returncode == 0, r.stderr.decode()
    with av.open(io.BytesIO(r.stdout), format="yuv4mpegpipe") as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "rawvideo" and v.average_rate == Fraction(48000, 1001)
        assert (v.width, v.height) == (64, 48)
        assert len(list(c.decode(v))) == 12
    assert b"audio dropped" in r.stderr


def test_yuv4mpegpipe_carries_ten_bit_pictures(tmp_path):
    """A 10-bit source was refused ("--codec wrapped_avframe cannot go into .y4m"): FFmpeg's Y4M
    muxer writes C420p10 only when told non-standard output is wanted."""
    src = make_clip(
        tmp_path / "in.mkv", Clip(".mkv", "libx265", Fraction(25), n=4, pix_fmt="yuv420p10le")
    )
    r = rife(str(src), "-o", "-", "--format", "yuv4mpegpipe")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"YUV4MPEG2 W64 H48 F50:1") and b" C420p10 " in r.stdout[:80]
    with av.open(io.BytesIO(r.stdout), format="yuv4mpegpipe") as c:
        frames = list(c.decode(c.streams.video[0]))
    assert len(frames) == 8 and frames[0].format.name == "yuv420p10le"


def test_yuv4mpegpipe_says_it_carries_no_colour_matrix(tmp_path):
    from clips import make_video

    src = make_video(tmp_path / "in.mp4", n=4, colorspace=1)  # tagged bt709
    r = rife(str(src), "-o", "-", "--format", "yuv4mpegpipe")
    assert r.returncode == 0, r.stderr.decode()
    assert b"yuv4mpegpipe stores no colour matrix" in r.stderr
    assert b"(the source's matrix is bt709)" in r.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_standard_output_on_a_full_disk_is_one_line(tmp_path):
    src = make_clip(tmp_path / "in.mkv", Clip(".mkv", rate=Fraction(25), n=6))
    cmd = [sys.executable, "-m", "rife_cli", "interpolate", str(src), "-o", "-", "--model",
           "v3.6", "-q"]  # fmt: skip
    with open("/dev/full", "wb") as full:
        r = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    assert r.returncode == 1
    assert b"standard output: write failed (No space left on device)" in r.stderr
    assert b"Traceback" not in r.stderr and b"unexpected" not in r.stderr


def test_a_reader_that_goes_away_ends_the_run_cleanly(tmp_path):
    # raw frames, far more than a pipe's buffer (64 KiB), so the writer meets the closed end
    src = make_clip(tmp_path / "in.mkv", Clip(".mkv", rate=Fraction(25), n=12, w=192, h=144))
    cmd = [sys.executable, "-m", "rife_cli", "interpolate", str(src), "-o", "-", "--format",
           "yuv4mpegpipe", "--model", "v3.6", "-q"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert len(p.stdout.read(1000)) == 1000  # | head -c 1000
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=TIMEOUT) == 141, err
    finally:
        p.kill()
        p.wait()
    assert err.strip().splitlines() == [
        "rife: error: standard output was closed by its reader; stopped"
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-", "-o", "o.mkv", "--resume"], "--resume needs files"),
        (["IN", "-o", "-", "--resume"], "--resume needs files"),
        (["IN", "-o", "-", "--skip-existing"], "--skip-existing has no output file"),
        (["IN", "-o", "-", "--devices", "cpu,cpu"], "pipes cannot be cut"),
        (["-", "-o", "o.mkv", "--devices", "cpu,cpu"], "pipes cannot be cut"),
        (["IN", "-o", "-", "--json"], "--json prints on standard output"),
        (["IN", "-o", "o.mkv", "--format", "nut"], "--format is for -o -"),
        (["-"], "say where to write"),
    ],
)
def test_what_cannot_work_on_a_pipe_is_refused_before_any_work(tmp_path, args, message):
    src = make_clip(tmp_path / "in.mkv", Clip(".mkv", n=4))
    args = [str(src) if a == "IN" else str(tmp_path / a) if a.endswith(".mkv") else a for a in args]
    r = rife(*args, stdin=b"")  # an empty stdin: any read of it would fail otherwise
    err = r.stderr.decode()
    assert r.returncode in (1, 2), err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_an_empty_standard_input_is_one_line(tmp_path):
    r = rife("-", "-o", str(tmp_path / "o.mkv"), stdin=b"")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "rife: error: standard input: nothing came (an empty input)"


@pytest.fixture
def http_folder(tmp_path):
    """A local web server (127.0.0.1) over a folder, for the test's length only."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


def test_an_http_input_is_opened_as_ffmpeg_opens_it(tmp_path, http_folder):
    folder, base = http_folder
    make_clip(folder / "clip.mkv", Clip(".mkv", rate=Fraction(25), n=8, audio=[Track()]))
    summary = interpolate_video(
        f"{base}/clip.mkv", tmp_path / "o.mkv", engine_factory=lambda need: blend_engine()
    )
    assert summary.frames_out == 16 and summary.audio == ["aac"]
    assert summary.input == f"{base}/clip.mkv"
    with pytest.raises(InputError, match=r"missing\.mkv: cannot be read"):
        interpolate_video(f"{base}/missing.mkv", tmp_path / "m.mkv",
                          engine_factory=lambda need: blend_engine())  # fmt: skip
    assert not (tmp_path / "m.mkv").exists()


def test_a_url_without_o_is_written_in_the_current_folder(tmp_path, http_folder):
    folder, base = http_folder
    make_clip(folder / "a.mkv", Clip(".mkv", rate=Fraction(25), n=6))
    here = tmp_path / "here"
    here.mkdir()
    r = rife(f"{base}/a.mkv", "--exp", "1", cwd=here)
    assert r.returncode == 0, r.stderr.decode()
    assert [p.name for p in here.iterdir()] == ["a_2x_50fps.mkv"]
    with av.open(str(here / "a_2x_50fps.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12


def test_an_http_input_with_the_cli_named_after_the_url(tmp_path, http_folder):
    folder, base = http_folder
    for name in ("a", "b"):
        make_clip(folder / f"{name}.mkv", Clip(".mkv", rate=Fraction(25), n=6))
    out = tmp_path / "out"
    out.mkdir()
    r = rife(f"{base}/a.mkv", f"{base}/b.mkv?x=1", "-o", str(out), "--exp", "1")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["a_2x_50fps.mkv", "b_2x_50fps.mkv"]


def test_a_named_pipe_is_read_once_like_standard_input(tmp_path):
    """`rife interpolate <(ffmpeg ...)` and named pipes were "empty file" (a pipe has no size)."""
    src = make_clip(tmp_path / "in.mkv", Clip(".mkv", rate=Fraction(25), n=6))
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(src.read_bytes())

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        r = rife(str(fifo), "-o", str(tmp_path / "o.mkv"))
    finally:
        writer.join(timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr.decode()
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert len(list(c.decode(c.streams.video[0]))) == 12


def test_a_server_that_sends_nothing_times_out_and_says_so(monkeypatch):
    import socket

    from rife_cli.video import pipes

    monkeypatch.setattr(pipes, "URL_TIMEOUT_US", 1_000_000)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    held = []
    accepting = threading.Thread(target=lambda: held.append(server.accept()), daemon=True)
    accepting.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/a.mkv"
    try:
        with (
            pytest.raises(InputError, match=r"nothing came for 1 s: timed out"),
            pipes.spooled_input(url),
        ):
            pass
    finally:
        server.close()
        for conn, _ in held:
            conn.close()
