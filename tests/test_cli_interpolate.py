"""`rife interpolate` through Click's runner: real weights on a tiny clip, and the error paths."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest
from click.testing import CliRunner
from clips import decode, make_video

from rife_cli.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    return make_video(d / "clip.mp4", n=6, w=96, h=64, audio=True)


def test_exp1_real_model_json(clip):
    res = run(
        "interpolate", clip, "--exp", "1", "--json", "--quiet", "--force", "--precision", "fp32"
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    out = clip.with_name("clip_2x_50fps.mp4")
    assert (
        summary["output"] == str(out) and summary["frames_out"] == 12 and summary["model"] == "v3.6"
    )
    assert summary["fps_in"] == "25" and summary["fps_out"] == "50"
    frames, _, info = decode(out)
    assert len(frames) == 12 and info["audio"][0][0] == "aac"


def test_an_output_ending_in_a_slash_is_a_folder_of_png_frames(clip, tmp_path):
    res = run("interpolate", clip, "--exp", "1", "-o", f"{tmp_path / 'frames'}/", "-q")
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert len(pngs) == 11 and all(n.endswith(".png") for n in pngs)


def test_png_frames_go_into_an_empty_folder_that_stays_the_same_folder(clip, tmp_path, monkeypatch):
    # A mount point cannot be removed and replaced by the finished folder (EBUSY, after all the
    # work): the frames are made inside it and moved in, so the folder itself (inode) is kept.
    frames = tmp_path / "mnt"
    frames.mkdir()
    inode = frames.stat().st_ino
    res = run("interpolate", clip, "--exp", "1", "-o", frames, "--png", "-q")
    assert res.exit_code == 0, res.output
    assert frames.stat().st_ino == inode
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:08d}.png" for i in range(11)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]
    # "-o ." in an empty current folder is that folder
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    res = run("interpolate", clip, "--exp", "1", "-o", ".", "--png", "-q")
    assert res.exit_code == 0, res.output
    assert len(list(here.glob("*.png"))) == 11 and not list(here.glob(".*"))


def test_a_midpoint_model_names_why_it_cannot_serve_a_source_with_missing_frames(tmp_path):
    # 25 fps with frames 5 and 6 missing (a file cut off mid-GOP looks the same at its end): on
    # a grid, so not "variable-frame-rate"; the input named, for a batch of files
    pts = [i for i in range(12) if i not in (5, 6)]
    src = make_video(tmp_path / "gaps.mkv", n=len(pts), pts=pts, time_base=Fraction(1, 25))
    res = run("interpolate", src, "--exp", "1", "--model", "v3.6", "-o", tmp_path / "o.mkv")
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        f"rife: error: {src}: model v3.6 makes only midpoints and cannot serve a source with "
        "frames missing from its timeline (held or dropped, or cut off); use --model v4.0"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaps.mkv"]


def test_multi3_uses_v4(clip, tmp_path):
    res = run("interpolate", clip, "--multi", "3", "-o", tmp_path / "o.mkv", "--json", "-q")
    assert res.exit_code == 0, res.output
    assert "using model v4.0" in res.stderr
    assert json.loads(res.stdout)["frames_out"] == 18


def test_explicit_v3_refuses_multi3_before_work(clip, tmp_path):
    res = run("interpolate", clip, "--multi", "3", "--model", "v3.6", "-o", tmp_path / "o.mp4")
    assert res.exit_code == 1
    assert "--model v4.0" in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,code,msg",
    [
        (["--exp", "0"], 2, "--exp 0"),
        (["--exp", "1", "--fps", "60"], 2, "exclude"),
        (["--fps", "10"], 2, "below the source rate"),
        (["--fps", "abc"], 2, "not a frame rate"),
        (["--multi", "1"], 2, "--multi 1"),
    ],
)
def test_usage_errors_exit_2(clip, tmp_path, args, code, msg):
    res = run("interpolate", clip, "-o", tmp_path / "o.mp4", *args)
    assert res.exit_code == code, res.output
    assert msg in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.mp4").exists()


def test_bad_inputs_one_line(tmp_path):
    (tmp_path / "text.mp4").write_text("hello, not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    for name, msg in (
        ("missing.mp4", "no such file"),
        ("text.mp4", "not a readable video"),
        ("empty.mp4", "empty file"),
        ("nothing", "no images"),
    ):
        res = run("interpolate", tmp_path / name, "-q")
        assert res.exit_code == 1, (name, res.output)
        assert msg in res.stderr, (name, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_several_inputs_one_failing(clip, tmp_path):
    (tmp_path / "bad.mp4").write_text("junk")
    res = run("interpolate", clip, tmp_path / "bad.mp4", "-o", tmp_path / "outdir", "-q", "--json")
    assert res.exit_code == 3, res.output
    summaries = json.loads(res.stdout)
    assert len(summaries) == 1 and (tmp_path / "outdir" / "clip_2x_50fps.mp4").exists()


def test_png_sequence_reproduces_reference_midpoints(tmp_path):
    """Two golden frames as an image sequence: the made frame is the reference's v3.6 midpoint."""
    import shutil

    import cv2
    from conftest import GOLDEN, psnr

    seq = tmp_path / "seq"
    seq.mkdir()
    shutil.copy(GOLDEN / "I0" / "frame0.png", seq / "0001.png")
    shutil.copy(GOLDEN / "I0" / "frame1.png", seq / "0002.png")
    res = run("interpolate", seq, "-o", tmp_path / "out", "--png", "-q", "--precision", "fp32")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 3
    ref = cv2.imread(str(GOLDEN / "I0" / "v3.6_exp2_2.png"))
    assert psnr(cv2.imread(str(files[1])), ref) >= 50


@pytest.mark.parametrize(
    "args,msg",
    [
        # No NVIDIA driver on the test machine: one line naming a software encoder (a driver
        # whose GPU lacks NVENC, or another failure, gets its own line).
        (
            ["--codec", "h264_nvenc"],
            "no NVIDIA GPU or driver here; use --codec libx264|has no NVENC|cannot start",
        ),
        (["--preset", "warp-speed"], "cannot start"),
        (["--codec", "nosuchcodec"], "no such encoder"),
    ],
)
def test_encoder_problems_before_any_work(clip, tmp_path, args, msg):
    import torch

    if "h264_nvenc" in args and torch.cuda.is_available():
        pytest.skip("this machine may well have NVENC")
    res = run("interpolate", clip, "-o", tmp_path / "o.mp4", "-q", *args)
    assert res.exit_code == 2, res.output
    assert re.search(msg, res.output) and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_a_notice_during_the_progress_bar_gets_its_own_line(capsys):
    """Warnings in the middle of a run were glued onto the end of the progress bar's line."""
    from rife_cli.cli import _Progress, notice

    bar = _Progress(False, "in.mp4")
    bar.total(10)
    bar(3)
    notice("hello")
    bar(5)
    bar.close()
    notice("after")
    lines = capsys.readouterr().err.replace("\r", "\n").split("\n")
    assert "rife: hello" in lines and "rife: after" in lines
    assert _Progress.drawn is None


def test_two_inputs_of_one_name_never_write_one_output(clip, tmp_path):
    """x/clip.mp4 and y/clip.mp4 into one folder: the second overwrote the first with --force,
    and without it failed on a file the same run had made. Now the second is refused, said."""
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    res = run("interpolate", tmp_path / "x/clip.mp4", tmp_path / "y/clip.mp4", "-o", f"{out}/",
              "--force", "-q")  # fmt: skip
    assert res.exit_code == 3, res.output
    assert f"also the output of {tmp_path / 'x/clip.mp4'} in this run" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_2x_50fps.mp4"]


def test_a_folder_holding_one_video_is_a_batch_of_one(clip, tmp_path):
    """`rife interpolate videos/ -o done/` wrote PNG frames where the folder held one video."""
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(clip.read_bytes())
    res = run("interpolate", tmp_path / "videos", "-o", f"{tmp_path / 'done'}/", "-q")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a_2x_50fps.mp4"]


def test_the_same_input_twice_is_made_once(clip, tmp_path):
    res = run("interpolate", clip, clip, "-o", f"{tmp_path / 'twice'}/", "-q")
    assert res.exit_code == 0, res.output
    assert "given more than once; interpolated once" in res.output
    assert sorted(p.name for p in (tmp_path / "twice").iterdir()) == ["clip_2x_50fps.mp4"]


def test_resuming_a_finished_output_skips_it(clip, tmp_path):
    """--resume after a batch was stopped: the inputs finished before are done, not failures
    ("exists", exit 3)."""
    res = run("interpolate", clip, "-o", tmp_path / "one.mp4", "-q")
    assert res.exit_code == 0, res.output
    res = run("interpolate", clip, "-o", tmp_path / "one.mp4", "-q", "--resume")
    assert res.exit_code == 0, res.output
    assert "skipped:" in res.output and "exists (finished)" in res.output


@pytest.mark.parametrize(
    "args,code,said",
    [
        (["--crf", "99"], 2, "--crf 99: libx264 takes 0 to 51"),
        (["--crf", "-5"], 2, "-5 is not in the range"),
        (["--scene-threshold", "-1"], 2, "-1.0 is not in the range"),
        (["--force", "--skip-existing"], 2, "give one of them"),
    ],
)
def test_out_of_range_options_are_refused(clip, tmp_path, args, code, said):
    res = run("interpolate", clip, "-o", tmp_path / "o.mp4", "-q", *args)
    assert res.exit_code == code and said in res.output, res.output
    assert not (tmp_path / "o.mp4").exists()


def test_several_inputs_into_a_video_file_name_are_refused(clip, tmp_path):
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    res = run("interpolate", clip, other, "-o", tmp_path / "single.mp4")
    assert res.exit_code == 2
    assert "with several inputs, -o must be a directory, not a .mp4 file" in res.output
    assert not (tmp_path / "single.mp4").exists()


def test_rife_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    """RIFE_DEBUG=1 re-raised the error: exit 1 for every failure, whatever the README says."""
    missing = tmp_path / "nothing.mp4"
    plain = CliRunner().invoke(main, ["interpolate", str(missing)])
    debug = CliRunner(env={"RIFE_DEBUG": "1"}).invoke(main, ["interpolate", str(missing)])
    assert plain.exit_code == debug.exit_code != 0
    assert "Traceback" in debug.output and "Traceback" not in plain.output


def test_an_existing_folder_without_a_slash_says_what_to_write(clip, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    res = run("interpolate", clip, "-o", tmp_path / "d", "-q")
    assert res.exit_code == 2 and "a directory; end it with / for PNG frames" in res.output
