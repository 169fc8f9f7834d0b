"""`rife doctor`: one screen (or JSON) on what the machine offers, and the flags it suggests."""

from __future__ import annotations

import dataclasses
import json

from click.testing import CliRunner

from rife_cli.cli import main
from rife_cli.doctor import Codec, Gpu, render, suggestions


def test_doctor_reports_this_machine_as_json_and_text():
    res = CliRunner().invoke(main, ["doctor", "--json", "--no-bench"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["torch"].startswith("2.") and r["cores"] >= 1 and r["lanes"] >= 1
    assert {c["name"] for c in r["codecs"]} == {"h264", "hevc", "av1"}
    assert set(r["models"]) >= {"v3.6", "v4.0"}
    assert any(f.startswith("--precision ") for f in r["suggest"])
    text = CliRunner().invoke(main, ["doctor", "--no-bench"])
    assert text.exit_code == 0 and "suggested: rife interpolate --precision" in text.output
    assert len(text.output.splitlines()) <= 25  # one screen


def report(gpu_gib: float, nvdec: bool, nvenc: bool):
    from rife_cli.doctor import collect

    r = collect(try_gpu=False)
    gpus = [Gpu(0, "Test GPU", gpu_gib, gpu_gib - 1, "9.0", True, True)] if gpu_gib else []
    codecs = [Codec(n, True, nvdec, True, nvenc) for n in ("h264", "hevc", "av1")]
    return dataclasses.replace(r, gpus=gpus, codecs=codecs, cuda="12.8")


def test_flags_for_a_large_gpu_with_nvidia_codecs():
    flags, notes = suggestions(report(141, nvdec=True, nvenc=True))
    assert flags == ["--precision fp16", "--hwaccel cuda", "--codec h264_nvenc"]
    assert any("automatic batch" in n for n in notes)


def test_flags_for_a_small_gpu_without_nvidia_codecs():
    r = report(4, nvdec=False, nvenc=False)
    r.suggest, r.notes = suggestions(r)
    assert r.suggest == ["--precision fp16", "--batch-size 1", "--preset veryfast"]
    assert "GPU 0: Test GPU, 4 GiB" in render(r)
