"""NVDEC's pictures handed to the engine on the GPU (rife_cli.video.nvdec), its logic on the CPU:
PyAV exports host planes through the same DLPack code as GPU ones, so here decoded pictures are
taken as if NVDEC had left them on the device and the CPU stands for the GPU."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from clips import decode, interpolate_blended, make_video

from rife_cli.engine import Interpolator
from rife_cli.pipeline import run as pipeline_run
from rife_cli.video import nvdec
from rife_cli.video import source as video_source
from rife_cli.video.source import frame_samples

CPU = torch.device("cpu")


@pytest.fixture
def on_device(monkeypatch):
    """Every decoded picture taken as one NVDEC left on the device, yuv420p exported as nv12 is
    (the CPU decoders give yuv420p); the hardware decoder's opening recorded, software used."""
    monkeypatch.setattr(nvdec, "on_gpu", lambda frame: True)
    monkeypatch.setattr(nvdec, "KEPT_FORMATS", (*nvdec.KEPT_FORMATS, "yuv420p"))
    opened = []
    real = video_source._open_video

    def open_video(path, hwaccel, keep_on_device=False):
        opened.append((hwaccel, keep_on_device))
        return real(path, None)

    monkeypatch.setattr(video_source, "_open_video", open_video)
    return opened


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Decoded pictures 150 wide, whose rows the decoder pads (the case a layout error shows)."""
    path = make_video(tmp_path_factory.mktemp("nvdec") / "a.mkv", n=2, w=150, h=86)
    with av.open(str(path)) as c:
        return [f for f in c.decode(video=0)]


@pytest.mark.parametrize("fmt", ["nv12", "p010le", "yuv420p"])
def test_device_samples_are_the_host_samples(pictures, fmt):
    frame = pictures[0] if fmt == "yuv420p" else pictures[0].reformat(format=fmt)
    assert frame.planes[0].line_size > frame.width * (2 if fmt == "p010le" else 1)
    got = nvdec.device_samples(frame, CPU)
    assert got.dtype == (torch.int16 if fmt == "p010le" else torch.uint8)
    want = frame_samples(frame)
    assert got.shape == want.shape and np.array_equal(got.numpy().view(want.dtype), want)


def test_a_picture_on_another_device_is_refused(pictures):
    with pytest.raises(ValueError, match="the engine on meta"):
        nvdec.device_samples(pictures[0], torch.device("meta"))


def test_the_first_picture_is_checked_and_a_difference_turns_the_device_way_off(
    pictures, on_device
):
    warned = []
    kept = nvdec.DevicePictures(CPU, "a.mkv", warned.append)
    frame = pictures[0]
    assert kept.keeps(frame, (150, 86)) and not kept.keeps(frame, (152, 86))
    wrong = lambda host: frame_samples(host) + 1
    samples, host = kept.take(frame, wrong)
    assert samples is None and host is frame
    assert warned == [
        (
            "a.mkv: NVDEC's pictures cannot be handed to the engine on the GPU (its samples "
            "differ from the host's download of it); they go through host memory"
        )
    ]
    samples, _ = kept.take(pictures[1], frame_samples)
    assert samples is None and not kept.keeps(pictures[1], (150, 86)) and len(warned) == 1


def test_a_picture_that_cannot_be_exported_turns_the_device_way_off(
    pictures, on_device, monkeypatch
):
    warned = []
    kept = nvdec.DevicePictures(CPU, "a.mkv", warned.append)
    samples, _ = kept.take(pictures[0], frame_samples)
    assert samples is not None and kept.checked

    def refuse(frame, device):
        raise NotImplementedError("unsupported sw_format for DLPack export")

    monkeypatch.setattr(nvdec, "device_samples", refuse)
    samples, host = kept.take(pictures[1], frame_samples)
    assert samples is None and host is pictures[1]
    assert len(warned) == 1 and "NotImplementedError: unsupported sw_format" in warned[0]


def test_only_pictures_left_on_the_device_are_kept(pictures):
    kept = nvdec.DevicePictures(CPU, "a.mkv")
    assert not kept.keeps(pictures[0], (150, 86))  # a software decoder's picture
    assert nvdec.download(pictures[0]) is pictures[0]


def test_pictures_the_engine_will_not_take_come_down_before_the_filters(monkeypatch):
    """Another size (the host fits it) or another format: downloaded by _settled."""

    class Picture:
        def __init__(self, w, fmt="nv12"):
            self.width, self.height, self.fmt = w, 86, fmt

    monkeypatch.setattr(nvdec, "on_gpu", lambda f: isinstance(f, Picture))
    monkeypatch.setattr(nvdec, "picture_format", lambda f: f.fmt)
    monkeypatch.setattr(nvdec, "download", lambda f: ("host", f.width, f.fmt))
    kept = nvdec.DevicePictures(CPU, "a.mkv")
    frames = [Picture(150), Picture(200), Picture(150, "p016le"), Picture(150)]
    out = list(video_source._settled(iter(frames), kept, (150, 86)))
    assert out[0] is frames[0] and out[3] is frames[3]
    assert out[1:3] == [("host", 200, "nv12"), ("host", 150, "p016le")]


def test_read_frames_hands_device_samples_with_host_copies(tmp_path, on_device):
    src = make_video(tmp_path / "a.mp4", n=6, cut_at=3)
    info = video_source.probe(src)
    host = list(video_source.read_frames(info, planes=True))
    kept = list(video_source.read_frames(info, hwaccel="cuda", planes=True, device=CPU))
    assert on_device == [(None, False), ("cuda", True)]
    assert len(kept) == len(host) == 6
    for h, k in zip(host, kept):
        assert isinstance(k.planes.data, torch.Tensor) and isinstance(h.planes.data, np.ndarray)
        assert np.array_equal(k.planes.data.numpy(), h.planes.data)
        assert np.array_equal(k.thumb, h.thumb) and k.planes.cosited == h.planes.cosited
        assert np.array_equal(k.original.to_ndarray(), h.original.to_ndarray())
        assert (k.index, k.time, k.duration, k.edge) == (h.index, h.time, h.duration, h.edge)


def test_without_planes_or_a_device_nothing_stays_on_the_device(tmp_path, on_device):
    info = video_source.probe(make_video(tmp_path / "a.mp4", n=2))
    for kw in ({"planes": False, "device": CPU}, {"planes": True}):
        frames = list(video_source.read_frames(info, hwaccel="cuda", **kw))
        assert all(not isinstance(getattr(f.planes, "data", None), torch.Tensor) for f in frames)
    assert [keep for _, keep in on_device] == [False, False]


def test_the_pipeline_takes_device_samples_and_writes_the_same_video(tmp_path, monkeypatch):
    """The whole run with the engine taking YUV pictures (as on CUDA), once through host memory
    and once with NVDEC's pictures on its device: the same output, frame for frame."""
    src = make_video(tmp_path / "a.mp4", n=8, cut_at=5)
    monkeypatch.setattr(Interpolator, "device_colour", property(lambda self: True))
    host = interpolate_blended(src, tmp_path / "host.mkv", codec="ffv1", exp=1)

    monkeypatch.setattr(video_source, "check_hwaccel", lambda info, hw: True)
    monkeypatch.setattr(pipeline_run._Run, "_nvdec_device", lambda self, planes: CPU)
    real_read = pipeline_run.read_frames
    monkeypatch.setattr(
        pipeline_run,
        "read_frames",
        lambda info, warn, stats, hwaccel, planes, start_at, device: real_read(
            info, warn, stats, hwaccel, planes, start_at, device
        ),
    )
    monkeypatch.setattr(nvdec, "on_gpu", lambda frame: True)
    monkeypatch.setattr(nvdec, "KEPT_FORMATS", ("yuv420p",))
    real_open = video_source._open_video
    monkeypatch.setattr(video_source, "_open_video", lambda path, hw, **kw: real_open(path, None))
    taken = []
    real_samples = Interpolator._samples
    monkeypatch.setattr(
        Interpolator,
        "_samples",
        lambda self, pic: taken.append(pic.data) or real_samples(self, pic),
    )
    device = interpolate_blended(src, tmp_path / "device.mkv", codec="ffv1", exp=1, hwaccel="cuda")
    assert taken and all(isinstance(d, torch.Tensor) for d in taken)
    assert (device.frames_out, device.scene_cuts) == (host.frames_out, host.scene_cuts) == (16, 1)
    for a, b in zip(decode(tmp_path / "host.mkv")[0], decode(tmp_path / "device.mkv")[0]):
        assert np.array_equal(a, b)


def test_dedup_keeps_pictures_on_the_host():
    run = pipeline_run._Run.__new__(pipeline_run._Run)
    run.engine = type("Engine", (), {"torch_device": torch.device("cuda", 1)})()
    run.hwaccel, run.dedup = "cuda:1", None
    assert run._nvdec_device(True) == torch.device("cuda", 1)
    assert run._nvdec_device(False) is None
    run.dedup = object()
    assert run._nvdec_device(True) is None
    run.dedup, run.hwaccel = None, None
    assert run._nvdec_device(True) is None
