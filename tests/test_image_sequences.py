"""Image folders as input: their rate (--input-fps, default 25) and output folders made beforehand."""

from __future__ import annotations

import json
from fractions import Fraction

import cv2
import pytest
from click.testing import CliRunner
from clips import decode, interpolate_blended, make_video, moving_frame

from rife_cli.cli import main
from rife_cli.errors import OutputError, UsageError


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def seq(tmp_path):
    d = tmp_path / "seq"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"{i}.png"), moving_frame(i, 64, 48))
    return d


def test_input_fps_gives_an_exact_rate(tmp_path, seq):
    s = interpolate_blended(seq, tmp_path / "o.mkv", exp=1, codec="ffv1", input_fps="23.976")
    assert (s.fps_in, s.fps_out) == ("24000/1001", "48000/1001")
    frames, times, info = decode(tmp_path / "o.mkv")
    # Matroska states the rate as a default duration in nanoseconds; read back, 48000/1001 is
    # 7001/146, as in the ffmpeg program's own files (ffmpeg -r 48000/1001 ... -c:v ffv1 o.mkv)
    assert info["rate"] == Fraction(7001, 146) and len(frames) == s.frames_out == 12
    # Matroska keeps milliseconds: each output frame within half of one of its exact time
    for i, t in enumerate(times):
        assert abs(t - i * Fraction(1001, 48000)) <= Fraction(1, 2000), (i, t)
    assert s.duration == pytest.approx(float(6 * Fraction(1001, 24000)))
    s = interpolate_blended(seq, tmp_path / "o.mp4", exp=1, input_fps=Fraction(30000, 1001))
    assert decode(tmp_path / "o.mp4")[2]["rate"] == Fraction(60000, 1001)


def test_default_rate_is_said_in_summary_and_json(tmp_path, seq):
    res = cli("interpolate", seq, "-o", tmp_path / "out/", "--json", "--model", "v4.0")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["fps_in"], summary["fps_out"]) == ("25", "50")
    assert "25 -> 50 fps (an image folder's default rate; --input-fps sets it)" in res.output
    res = cli("interpolate", seq, "-o", tmp_path / "o2/", "--json", "--input-fps", "24000/1001")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fps_in"] == "24000/1001"
    assert "default rate" not in res.output


@pytest.mark.parametrize(
    "given,msg",
    [
        ("video", "--input-fps sets the rate of an image folder; "),
        ("folder", "--input-fps 'fast' is not a frame rate"),
        ("zero", "--input-fps '0' is not a positive frame rate"),
    ],
)
def test_input_fps_usage_errors(tmp_path, seq, given, msg):
    src = make_video(tmp_path / "a.mp4", n=3) if given == "video" else seq
    rate = {"video": "24", "folder": "fast", "zero": "0"}[given]
    listing = sorted(p.name for p in tmp_path.iterdir())
    res = cli("interpolate", src, "--input-fps", rate, "-q")
    assert res.exit_code == 2, res.output
    assert msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    with pytest.raises(UsageError, match="--input-fps"):
        interpolate_blended(src, tmp_path / "o.mkv", input_fps=rate)


def test_video_among_several_inputs_refused_before_any_work(tmp_path, seq):
    make_video(tmp_path / "a.mp4", n=3)
    res = cli("interpolate", seq, tmp_path / "a.mp4", "-o", tmp_path / "out", "--input-fps", "30")
    assert res.exit_code == 2, res.output
    assert "a.mp4 is a video, whose rate comes from the file" in res.output
    assert not (tmp_path / "out").exists()


def test_empty_output_folder_is_taken(tmp_path, seq):
    out = tmp_path / "out"
    out.mkdir()
    s = interpolate_blended(seq, out, png=True, exp=1)
    assert s.frames_out == 11 == len(list(out.iterdir()))
    # ... but not one holding anything: our own frames need --force, others are never replaced
    with pytest.raises(OutputError, match="exists; use --force"):
        interpolate_blended(seq, out, png=True, exp=1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    for force in (False, True):  # without --force too: "use --force" would not help
        with pytest.raises(OutputError, match="other files"):
            interpolate_blended(seq, other, png=True, exp=1, force=force)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_empty_output_folder_through_the_cli_and_skip_existing(tmp_path, seq):
    out = tmp_path / "out"
    out.mkdir()
    res = cli("interpolate", seq, "-o", f"{out}/", "--png", "-q", "--model", "v4.0")
    assert res.exit_code == 0, res.output
    assert len(list(out.iterdir())) == 11
    empty = tmp_path / "empty"
    empty.mkdir()
    # an empty folder is no finished output: --skip-existing makes it
    s = interpolate_blended(seq, empty, png=True, exp=1, skip_existing=True)
    assert not s.skipped and len(list(empty.iterdir())) == 11
    assert interpolate_blended(seq, empty, png=True, exp=1, skip_existing=True).skipped


def test_interrupted_image_folder_resumes_at_the_same_rate_however_written(tmp_path):
    """The journal keeps the exact rate: 23.976 and 24000/1001 are one rate to --resume."""
    from rife_cli.errors import Interrupted
    from rife_cli.pipeline import StopRequest

    seq = tmp_path / "long"
    seq.mkdir()
    for i in range(30):
        cv2.imwrite(str(seq / f"{i}.png"), moving_frame(i, 64, 48))
    out = tmp_path / "o.mkv"
    stop = StopRequest()

    def progress(done):
        if done == 20:
            stop.request(130)

    options = {"exp": 1, "codec": "ffv1", "segment_frames": 6}
    with pytest.raises(Interrupted, match="--resume continues"):
        interpolate_blended(seq, out, input_fps="23.976", stop=stop, progress=progress, **options)
    s = interpolate_blended(seq, out, input_fps="24000/1001", resume=True, **options)
    assert s.frames_out == 60 and s.fps_out == "48000/1001"
    assert not (tmp_path / ".o.mkv.rife-resume").exists()


def test_a_gap_in_the_numbering_is_said(tmp_path, seq):
    # a render that dropped frame 3: the images are taken in order (so the rest play one frame
    # early), and that is said rather than done silently
    warnings: list[str] = []
    interpolate_blended(seq, tmp_path / "o.mkv", exp=1, warn=warnings.append)
    assert not [w for w in warnings if "missing" in w]
    (seq / "3.png").unlink()
    s = interpolate_blended(seq, tmp_path / "o2.mkv", exp=1, warn=warnings.append)
    assert s.frames_in == 5
    said = (
        f"{seq}: frame number 3 missing from the sequence; the images are taken in order, so "
        "those after a gap come one frame early each"
    )
    assert [w for w in warnings if "missing" in w] == [said]
