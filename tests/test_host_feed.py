"""What the host does for a GPU: `rife bench --pipeline` (the stand-in engine, the bare transcode),
the codecs' threads, NVENC's defaults and device, each worker's NVDEC device, and the message for
a GPU without NVENC. All on the CPU: the options passed and the devices chosen are what is
checked."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from clips import blend_engine, decode, make_video

from rife_cli import doctor
from rife_cli.bench import pipeline_bench
from rife_cli.cli import main
from rife_cli.errors import UsageError
from rife_cli.pipeline import interpolate_video
from rife_cli.pipeline import run as pipeline_run
from rife_cli.video import sink as video_sink
from rife_cli.video import source as video_source
from rife_cli.video.sink import EncodeOptions, VideoSink, encoder_options, prepare_encoding

KEYS = {"fps_out", "frames_out", "seconds", "cpu_s_per_frame", "bare_fps_out"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("feed") / "a.mp4", n=12, w=128, h=72)


def test_pipeline_bench_makes_first_frames_through_planes(clip, tmp_path):
    """The stand-in's made frame is its pair's first frame, reaching the encoder as planes: with
    a lossless encoder, output 2i and 2i + 1 are both source frame i; the bare transcode writes
    as many frames."""
    out = tmp_path / "o.mkv"
    r = pipeline_bench(clip, exp=1, codec="ffv1", output=out)
    assert KEYS <= set(r) and r["frames_out"] == r["bare_frames_out"] == 24
    assert r["fps_out"] > 0 and r["bare_fps_out"] > 0 and r["cpu_s_per_frame"] > 0
    assert r["codec"] == "ffv1" and r["pix_fmt"] == "yuv420p" and r["size"] == "128x72"
    src = decode(clip, "yuv420p")[0]
    got = decode(out, "yuv420p")[0]
    assert len(got) == 24
    for i, f in enumerate(src):
        assert np.array_equal(got[2 * i], f) and np.array_equal(got[2 * i + 1], f)


def test_pipeline_bench_without_output_leaves_nothing(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    before = set(clip.parent.iterdir())
    r = pipeline_bench(clip, multi=3, codec="libx264", preset="ultrafast", bare=False)
    assert r["frames_out"] == 36 and "bare_fps_out" not in r
    assert set(clip.parent.iterdir()) == before and not any(tmp_path.iterdir())


def test_pipeline_bench_reports_each_windows_highest_resident_memory(clip, monkeypatch):
    """rss_warm_mib / rss_late_mib are the highest readings from 20% to 55% and from 55% to 90%
    of the output frames, not one reading each: a reading that dips (the queues drained for a
    moment) does not show as a drop, a high one late does show as growth, and readings before
    the warm-up or after 90% count in neither window."""
    from rife_cli.pipeline import ceiling

    calls = []

    def reading() -> float:  # read once per output frame inside a window, then once at the end
        calls.append(len(calls) + 1)
        return {5: 900.0, 6: 100.0, 13: 700.0}.get(calls[-1], 500.0 + calls[-1])

    monkeypatch.setattr(ceiling, "_rss_mib", reading)
    r = pipeline_bench(clip, exp=1, codec="ffv1", bare=False)
    # 24 frames out: frames 5-13 are from 20% to 55% (readings 1-9), frames 14-21 from 55% to
    # 90% (readings 10-17); the 18th, at the end, counts in neither.
    assert r["frames_out"] == 24 and len(calls) == 18
    assert r["rss_warm_mib"] == 900.0 and r["rss_late_mib"] == 700.0
    assert r["rss_growth_mib"] == -200.0


def test_bench_pipeline_command_prints_one_json_line(clip, tmp_path):
    out = tmp_path / "o.mp4"
    res = CliRunner().invoke(
        main,
        ["bench", "--pipeline", str(clip), "--exp", "1", "--codec", "libx264", "--preset",
         "ultrafast", "--crf", "30", "-o", str(out), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (line,) = res.output.strip().splitlines()
    r = json.loads(line)
    assert KEYS <= set(r) and r["crf"] == 30 and r["preset"] == "ultrafast"
    assert out.is_file() and decode(out)[2]["frames"] == r["frames_out"] == 24
    text = CliRunner().invoke(main, ["bench", "--pipeline", str(clip), "--codec", "ffv1"])
    assert text.exit_code == 0 and "pipeline / bare" in text.output


def test_bench_pipeline_bad_input_is_one_line(tmp_path):
    res = CliRunner().invoke(main, ["bench", "--pipeline", str(tmp_path / "none.mp4")])
    assert res.exit_code != 0 and "no such file" in res.output and "Traceback" not in res.output


def test_encoders_use_frame_threads_on_every_core(tmp_path):
    sink = VideoSink(
        tmp_path / "o.mp4",
        64,
        64,
        Fraction(25),
        video_source.Colour(1, 1, 1, 1, True),
        8,
        EncodeOptions("libx264", pix_fmt="yuv420p"),
        "mp4",
    )
    cc = sink.stream.codec_context
    assert cc.thread_count == 0 and cc.thread_type == av.codec.context.ThreadType.AUTO
    sink.abort()


def test_decoder_uses_frame_and_slice_threads(clip, monkeypatch):
    seen = []
    real = video_source._open_video

    def spy(path, hwaccel, **kw):
        c = real(path, hwaccel, **kw)
        seen.append(c)
        return c

    monkeypatch.setattr(video_source, "_open_video", spy)
    info = video_source.probe(clip)
    it = video_source.read_frames(info)
    next(it)
    ctx = seen[0].streams.video[0].codec_context
    # FFmpeg's automatic count, settled when the decoder opened: more than one thread where
    # there is more than one core.
    assert ctx.thread_type == av.codec.context.ThreadType.AUTO
    assert ctx.thread_count >= min(2, os.cpu_count() or 1)
    it.close()


@pytest.mark.parametrize(
    "codec,crf,cq",
    [("h264_nvenc", None, "23"), ("hevc_nvenc", None, "28"), ("h264_nvenc", 18, "18")],
)
def test_nvenc_constant_quality_without_a_bitrate(codec, crf, cq):
    opts = encoder_options(EncodeOptions(codec, crf=crf, pix_fmt="yuv420p"))
    assert opts["rc"] == "vbr" and opts["cq"] == cq and opts["b"] == "0"
    assert "gpu" not in opts and "crf" not in opts
    assert encoder_options(EncodeOptions(codec, pix_fmt="yuv420p", gpu=3))["gpu"] == "3"
    assert "gpu" not in encoder_options(EncodeOptions("libx264", pix_fmt="yuv420p", gpu=3))


def test_hwaccel_names_the_device(tmp_path, monkeypatch):
    made = []

    class Recorder:
        def __init__(self, **kw):
            made.append(kw)

    import av.codec.hwaccel

    monkeypatch.setattr(av.codec.hwaccel, "HWAccel", Recorder)
    monkeypatch.setattr(av, "open", lambda *a, **kw: kw["hwaccel"])
    video_source._open_video(tmp_path / "x.mp4", "cuda:2")
    video_source._open_video(tmp_path / "x.mp4", "cuda", keep_on_device=True)
    assert [(m["device_type"], m["device"], m["is_hw_owned"]) for m in made] == [
        ("cuda", "2", False),
        ("cuda", None, True),  # pictures left on the GPU for the engine (rife_cli.video.nvdec)
    ]


@pytest.mark.parametrize("device,want", [(torch.device("cuda", 1), 1), (torch.device("cpu"), None)])
def test_each_worker_decodes_and_encodes_on_its_own_gpu(clip, tmp_path, monkeypatch, device, want):
    """A --devices worker's engine on cuda:1: NVDEC opens cuda:1 and the encoder is told GPU 1
    (NVENC's `gpu`); on the CPU neither is changed."""
    eng = blend_engine()
    eng.torch_device = device
    monkeypatch.setattr(video_source, "check_hwaccel", lambda info, hw: True)
    decoders, encoders = [], []
    real_read = pipeline_run.read_frames

    def read(info, warn, stats, hwaccel, *rest):
        decoders.append(hwaccel)
        return real_read(info, warn, stats, None, *rest)

    real_sink = VideoSink.__init__

    def sink_init(self, path, w, h, rate, colour, bits, opts, *rest):
        encoders.append(opts.gpu)
        real_sink(self, path, w, h, rate, colour, bits, opts, *rest)

    monkeypatch.setattr(pipeline_run, "read_frames", read)
    monkeypatch.setattr(VideoSink, "__init__", sink_init)
    s = interpolate_video(
        clip, tmp_path / "o.mkv", engine_factory=lambda need: eng, exp=1, hwaccel="cuda"
    )
    assert s.frames_out == 24 and s.hwaccel == "cuda"
    assert decoders == ["cuda:1" if want is not None else "cuda"] and set(encoders) == {want}


@pytest.mark.parametrize(
    "gpus,node,message",
    [
        (["NVIDIA H200"], True, "the NVIDIA H200 has no NVENC video encoder.*--codec libx264"),
        (["NVIDIA A100-SXM4-80GB"], True, "A100-SXM4-80GB has no NVENC"),
        ([], False, "no NVIDIA GPU or driver here; use --codec libx264"),
    ],
)
def test_a_gpu_without_nvenc_names_a_software_encoder(tmp_path, monkeypatch, gpus, node, message):
    monkeypatch.setattr(video_sink, "nvidia_gpus", lambda: gpus)
    monkeypatch.setattr(video_sink, "NVIDIA_NODE", tmp_path if node else tmp_path / "none")
    with pytest.raises(UsageError, match=message) as err:
        prepare_encoding(tmp_path / "o.mp4", EncodeOptions("h264_nvenc"), 256, 256, Fraction(25), 8)
    assert "\n" not in str(err.value)


def test_hevc_nvenc_names_x265(tmp_path, monkeypatch):
    monkeypatch.setattr(video_sink, "nvidia_gpus", lambda: ["NVIDIA H100 80GB HBM3"])
    with pytest.raises(UsageError, match="H100 80GB HBM3 has no NVENC.*--codec libx265"):
        prepare_encoding(tmp_path / "o.mp4", EncodeOptions("hevc_nvenc"), 256, 256, Fraction(25), 8)


def test_doctor_says_which_side_limits(monkeypatch):
    encoder = {"fps_out": 40.0, "steady_fps_out": 47.0, "bare_fps_out": 50.0}
    host = {"fps_out": 20.0, "steady_fps_out": 25.0, "bare_fps_out": 50.0}
    notes = doctor.ceiling_notes(encoder, gpus=True, nvenc=True)
    assert notes[0] == "this CPU encodes at most 50 fps at 1080p with libx264 veryfast"
    assert "the encoder limits" in notes[1] and "h264_nvenc" in notes[1]
    assert (
        "rife's host side limits this box: it feeds 25 fps"
        in doctor.ceiling_notes(host, gpus=True, nvenc=False)[1]
    )
    assert doctor.ceiling_notes({"error": "x"}, True, True) == ["pipeline bench failed: x"]


def test_doctor_runs_a_short_pipeline_bench(monkeypatch):
    monkeypatch.setattr(doctor, "CEILING_SIZE", (128, 72))
    monkeypatch.setattr(doctor, "CEILING_FRAMES", 6)
    res = CliRunner().invoke(main, ["doctor", "--no-gpu-probe", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["pipeline"]["frames_out"] == 12 and r["pipeline"]["bare_fps_out"] > 0
    assert any(n.startswith("this CPU encodes at most") for n in r["notes"])
    quick = CliRunner().invoke(main, ["doctor", "--no-gpu-probe", "--no-bench", "--json"])
    assert json.loads(quick.output)["pipeline"] is None


def test_pipeline_bench_with_the_devices_own_conversions(clip, tmp_path, monkeypatch):
    """device=...: the stand-in is a network on that device, and the planes are converted there
    both ways (here the CPU device taking planes, as CUDA does): the made frames are the first
    frames but for the conversions' rounding."""
    from rife_cli.engine import Interpolator

    monkeypatch.setattr(Interpolator, "device_colour", property(lambda self: True))
    made = []
    real = video_sink.frame_from_planes
    monkeypatch.setattr(video_sink, "frame_from_planes", lambda p: made.append(p) or real(p))
    out = tmp_path / "o.mkv"
    r = pipeline_bench(clip, exp=1, codec="ffv1", output=out, device="cpu", bare=False)
    assert r["frames_out"] == 24 and r["engine"] == "conversions on cpu" and len(made) == 11
    src = decode(clip, "yuv420p")[0]
    got = decode(out, "yuv420p")[0]
    for i, f in enumerate(src):
        assert np.array_equal(got[2 * i], f)  # passed through
        if i < len(src) - 1:
            diff = np.abs(got[2 * i + 1].astype(int) - f.astype(int))
            # YUV -> BGR -> YUV: chroma resampled up and down again, so sharp edges differ a little
            assert diff.mean() < 0.1 and diff.max() <= 8
