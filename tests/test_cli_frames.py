"""`rife frames` end to end through Click's runner, with the real weights."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import GOLDEN, psnr

from rife_cli.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def pair(name="I0"):
    return GOLDEN / name / "frame0.png", GOLDEN / name / "frame1.png"


def test_exp2_reproduces_reference(tmp_path):
    a, b = pair("I1")
    res = run("frames", a, b, "--exp", "2", "-o", tmp_path / "out", "--precision", "fp32")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    assert np.array_equal(cv2.imread(str(files[0])), cv2.imread(str(a)))
    assert np.array_equal(cv2.imread(str(files[4])), cv2.imread(str(b)))
    for i in (1, 2, 3):
        ref = cv2.imread(str(GOLDEN / "I1" / f"v3.6_exp2_{i}.png"))
        assert psnr(cv2.imread(str(files[i])), ref) >= 50


@pytest.mark.parametrize("model,golden", [("v3.6", "v3.6_ratio0.3"), ("v4.0", "v4.0_t0.30")])
def test_ratio(tmp_path, model, golden):
    a, b = pair("I2")
    res = run(
        "frames", a, b, "--ratio", "0.3", "--model", model, "-o", tmp_path, "--precision", "fp32"
    )
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.iterdir())) == 3
    assert (
        psnr(
            cv2.imread(str(tmp_path / "001.png")), cv2.imread(str(GOLDEN / "I2" / f"{golden}.png"))
        )
        >= 50
    )


def test_multi3_switches_to_timestep_model(tmp_path):
    a, b = pair()
    res = run("frames", a, b, "--multi", "3", "-o", tmp_path)
    assert res.exit_code == 0, res.output
    assert "v4.0" in res.output
    assert len(list(tmp_path.iterdir())) == 4


def test_multi3_with_explicit_v3_is_an_error(tmp_path):
    a, b = pair()
    res = run("frames", a, b, "--multi", "3", "--model", "v3.6", "-o", tmp_path / "o")
    assert res.exit_code == 1
    assert "--model v4.0" in res.output
    assert not (tmp_path / "o").exists()


def small(img, size=(160, 96)):
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def test_rgba_carries_alpha(tmp_path):
    a, b = pair()
    im0, im1 = small(cv2.imread(str(a))), small(cv2.imread(str(b)))
    alpha0 = np.full(im0.shape[:2], 255, np.uint8)
    alpha1 = np.zeros(im0.shape[:2], np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([im0, alpha0]))
    cv2.imwrite(str(tmp_path / "b.png"), np.dstack([im1, alpha1]))
    res = run("frames", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    mid = cv2.imread(str(tmp_path / "o" / "001.png"), cv2.IMREAD_UNCHANGED)
    assert mid.shape == (96, 160, 4)
    assert np.all(mid[:, :, 3] == 128)  # 255 * 0.5 rounded to nearest


def test_gray_stays_gray_and_16bit_stays_16bit(tmp_path):
    a, b = pair()
    g0 = cv2.cvtColor(small(cv2.imread(str(a))), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    g1 = cv2.cvtColor(small(cv2.imread(str(b))), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "a.png"), g0)
    cv2.imwrite(str(tmp_path / "b.png"), g1)
    res = run("frames", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    mid = cv2.imread(str(tmp_path / "o" / "001.png"), cv2.IMREAD_UNCHANGED)
    assert mid.dtype == np.uint16 and mid.ndim == 2
    # the midpoint lies between the inputs' brightness, using the 16-bit range
    assert min(g0.mean(), g1.mean()) - 2000 < mid.mean() < max(g0.mean(), g1.mean()) + 2000
    assert len(np.unique(mid % 257)) > 1


def test_exr_float_in_float_out(tmp_path):
    a, b = pair()
    f0 = small(cv2.imread(str(a))).astype(np.float32) / 255
    f1 = small(cv2.imread(str(b))).astype(np.float32) / 255
    cv2.imwrite(str(tmp_path / "a.exr"), f0)
    cv2.imwrite(str(tmp_path / "b.exr"), f1)
    res = run("frames", tmp_path / "a.exr", tmp_path / "b.exr", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    mid = cv2.imread(str(tmp_path / "o" / "001.exr"), cv2.IMREAD_UNCHANGED)
    assert mid.dtype == np.float32 and mid.shape == f0.shape


@pytest.mark.parametrize(
    "extra,code,msg",
    [
        (["--ratio", "1.5"], 2, "outside (0, 1)"),
        (["--exp", "0"], 2, "--exp 0"),
        (["--exp", "1", "--ratio", "0.5"], 2, "exclude each other"),
        (["--multi", "1"], 2, "--multi 1"),
    ],
)
def test_bad_options(tmp_path, extra, code, msg):
    a, b = pair()
    res = run("frames", a, b, "-o", tmp_path / "o", *extra)
    assert res.exit_code == code, res.output
    assert msg in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_bad_inputs(tmp_path):
    a, b = pair()
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    cases = [
        ((tmp_path / "missing.png", b), "no such file"),
        ((a, tmp_path / "small.png"), "differs"),
        ((a, tmp_path / "text.png"), "not a readable image"),
    ]
    for (x, y), msg in cases:
        res = run("frames", x, y, "-o", tmp_path / "o")
        assert res.exit_code == 1, res.output
        assert msg in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()


def test_inputs_untouched(tmp_path):
    a, b = pair()
    shutil.copy(a, tmp_path / "a.png")
    shutil.copy(b, tmp_path / "b.png")
    before = (tmp_path / "a.png").read_bytes()
    res = run("frames", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path)
    assert res.exit_code == 0
    assert (tmp_path / "a.png").read_bytes() == before


def test_existing_files_need_force(tmp_path):
    """Files already in the output folder under the names to be written are never overwritten
    without --force: a one-line error naming the first, and nothing written."""
    a, b = pair()
    im0, im1 = small(cv2.imread(str(a))), small(cv2.imread(str(b)))
    cv2.imwrite(str(tmp_path / "a.png"), im0)
    cv2.imwrite(str(tmp_path / "b.png"), im1)
    out = tmp_path / "o"
    out.mkdir()
    (out / "001.png").write_bytes(b"keep me")
    (out / "002.png").write_bytes(b"and me")
    res = run("frames", tmp_path / "a.png", tmp_path / "b.png", "-o", out, "--model", "v4.0")
    assert res.exit_code == 1, res.output
    assert f"{out / '001.png'}: exists; use --force to overwrite" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert sorted(p.name for p in out.iterdir()) == ["001.png", "002.png"]
    assert (out / "001.png").read_bytes() == b"keep me"
    res = run(
        "frames", tmp_path / "a.png", tmp_path / "b.png", "-o", out, "--model", "v4.0", "--force"
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png"]
    assert np.array_equal(cv2.imread(str(out / "002.png")), im1)
    # other names in the folder are no obstacle; and never the inputs, even with --force
    res = run("frames", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path, "--model", "v4.0")
    assert res.exit_code == 0, res.output
    (tmp_path / "001.png").rename(tmp_path / "x.png")
    res = run("frames", tmp_path / "000.png", tmp_path / "002.png", "-o", tmp_path, "--force")
    assert res.exit_code == 2 and "would overwrite an input" in res.output, res.output


def test_jpeg_ends_are_the_input_files_not_a_second_generation(tmp_path):
    """The end frames in IMG0's format are the inputs' own bytes: a JPEG decoded and encoded
    again came out 31 dB from its source. An end of another format is written from its pixels."""
    a, b = pair()
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.imread(str(a)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.imread(str(b)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    res = run("frames", tmp_path / "a.jpg", tmp_path / "b.jpg", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["000.jpg", "001.jpg", "002.jpg"]
    assert files[0].read_bytes() == (tmp_path / "a.jpg").read_bytes()
    assert files[2].read_bytes() == (tmp_path / "b.jpg").read_bytes()
    res = run("frames", tmp_path / "a.jpg", b, "-o", tmp_path / "mixed")
    assert res.exit_code == 0, res.output
    last = tmp_path / "mixed" / "002.jpg"  # IMG1 is a PNG: written as JPEG from its pixels
    assert psnr(cv2.imread(str(last)), cv2.imread(str(b))) > 30


def test_an_output_folder_that_cannot_be_made_is_said_before_the_model_loads(tmp_path):
    a, b = pair()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = run("frames", a, b, "-o", blocker / "frames")
    assert (
        res.exit_code == 1
        and "cannot make it (" in res.output
        and "is not a directory)" in res.output
    )
