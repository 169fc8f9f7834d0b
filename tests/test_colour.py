"""YUV 4:2:0 to BGR on the device (rife_cli.engine.colour) against the host's exact conversion, and the
pipeline with pictures converted that way (what runs on CUDA, here on the CPU)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from clips import decode, interpolate_blended, make_video
from conftest import golden_pair

from rife_cli.engine import Interpolator
from rife_cli.engine.colour import Yuv420, chroma_cosited, yuv420_to_bgr
from rife_cli.video.source import SWS_FLAGS, sws_matrix


def host_bgr(frame: av.VideoFrame, matrix: int, full: bool) -> np.ndarray:
    return frame.reformat(
        format="bgr24",
        src_colorspace=sws_matrix(matrix),
        src_color_range=2 if full else 1,
        dst_color_range=2,
        interpolation=SWS_FLAGS,
    ).to_ndarray()


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """A photo (a golden frame) as decoded from FFV1, whose streams leave the chroma siting
    unsaid (centred), and from H.264, whose default is co-sited ("left")."""
    folder = tmp_path_factory.mktemp("colour")
    rgb = np.ascontiguousarray(golden_pair("I0")[0][:, :, ::-1])
    h, w = rgb.shape[:2]
    out = {}
    for codec in ("ffv1", "libx264"):
        path = make_video(
            folder / f"{codec}.mkv", n=1, w=w, h=h, codec=codec, frames=[rgb], colorspace=1
        )
        with av.open(str(path)) as c:
            out[codec] = next(c.decode(video=0))
    return out


@pytest.mark.parametrize("codec", ["ffv1", "libx264"])
@pytest.mark.parametrize("fmt", ["yuv420p", "nv12"])
@pytest.mark.parametrize("matrix,full", [(1, False), (6, False), (1, True), (9, False)])
def test_device_conversion_is_the_host_conversion(decoded, codec, fmt, matrix, full):
    """Each matrix and range, each siting, planar or interleaved chroma: the same levels as
    swscale's exact conversion, but for rounding."""
    frame = decoded[codec]
    planes = (frame if fmt == "yuv420p" else frame.reformat(format="nv12")).to_ndarray()
    h, w = frame.height, frame.width
    pic = Yuv420(planes, h, w, matrix, full, fmt == "nv12")
    want = host_bgr(frame, matrix, full).astype(int)
    pic.cosited = chroma_cosited(pic, want)
    assert pic.cosited == (codec == "libx264")
    device = yuv420_to_bgr(pic, torch.from_numpy(pic.data))
    assert device.shape == (1, 3, h, w)
    got = (device[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    diff = np.abs(got - want)
    assert diff.mean() < 0.02 and np.percentile(diff, 99.9) <= 1, (diff.mean(), diff.max())


@pytest.fixture
def device_colour(monkeypatch):
    """The CPU engine taking YUV planes, as a CUDA one does."""
    monkeypatch.setattr(Interpolator, "device_colour", property(lambda self: True))


def run_both(tmp_path, monkeypatch, src, **options):
    host = interpolate_blended(src, tmp_path / "host.mkv", codec="ffv1", **options)
    monkeypatch.setattr(Interpolator, "device_colour", property(lambda self: True))
    uploads = []
    to_tensor = Interpolator.to_tensor
    monkeypatch.setattr(
        Interpolator, "to_tensor", lambda self, fs: uploads.extend(fs) or to_tensor(self, fs)
    )
    device = interpolate_blended(src, tmp_path / "device.mkv", codec="ffv1", **options)
    assert uploads and all(isinstance(f, Yuv420) for f in uploads)
    return host, device, decode(tmp_path / "host.mkv")[0], decode(tmp_path / "device.mkv")[0]


def test_pipeline_on_device_converted_pictures(tmp_path, monkeypatch):
    src = make_video(tmp_path / "a.mkv", n=8, codec="ffv1", cut_at=5)
    host, device, h_frames, d_frames = run_both(tmp_path, monkeypatch, src, exp=1)
    assert (device.frames_out, device.scene_cuts) == (host.frames_out, host.scene_cuts) == (16, 1)
    s_frames = decode(src)[0]
    for i, f in enumerate(s_frames):
        assert np.array_equal(d_frames[2 * i], f)  # passed through untouched
    for a, b in zip(h_frames, d_frames):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_png_and_montage_keep_host_pictures(tmp_path, monkeypatch, device_colour):
    src = make_video(tmp_path / "a.mkv", n=4, codec="ffv1")
    uploads = []
    to_tensor = Interpolator.to_tensor
    monkeypatch.setattr(
        Interpolator, "to_tensor", lambda self, fs: uploads.extend(fs) or to_tensor(self, fs)
    )
    interpolate_blended(src, tmp_path / "png", png=True, exp=1)
    interpolate_blended(src, tmp_path / "m.mkv", exp=1, codec="ffv1", montage=True)
    assert uploads and all(isinstance(f, np.ndarray) for f in uploads)


def test_ten_bit_sources_keep_host_pictures(tmp_path, monkeypatch, device_colour):
    frames = [np.full((72, 128, 3), 300 + 40 * i, np.uint16) for i in range(4)]
    src = make_video(tmp_path / "a.mkv", n=4, codec="ffv1", pix_fmt="yuv420p10le", frames=frames)
    uploads = []
    to_tensor = Interpolator.to_tensor
    monkeypatch.setattr(
        Interpolator, "to_tensor", lambda self, fs: uploads.extend(fs) or to_tensor(self, fs)
    )
    assert interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1").frames_out == 8
    assert uploads and all(isinstance(f, np.ndarray) and f.dtype == np.uint16 for f in uploads)
