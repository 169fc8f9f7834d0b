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
from rife_cli.engine.colour import (
    LAYOUTS,
    PlaneFormat,
    Planes,
    Yuv420,
    bgr_to_planes,
    chroma_cosited,
    full_range_format,
    yuv420_to_bgr,
)
from rife_cli.video import sink as video_sink
from rife_cli.video.sink import frame_from_planes
from rife_cli.video.source import SWS_FLAGS, frame_samples, sws_matrix

# Every device format, each matrix family and both ranges.
ALL_FORMATS = list(LAYOUTS)
MATRICES = [(1, False), (6, False), (1, True), (9, False), (9, True)]


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


def photo(bits: int) -> np.ndarray:
    """A golden frame (BGR) with sharp red/blue edges added, at 8 or 16 bits (16: noise in the
    low byte, so that rounding to each depth is exercised)."""
    img = golden_pair("I0")[0].copy()
    img[8:24, 8:40] = (0, 0, 255)
    img[30:46, 50:90] = (255, 0, 0)
    if bits == 8:
        return img
    rng = np.random.default_rng(1)
    return img.astype(np.uint16) * 257 - rng.integers(0, 200, img.shape).astype(np.uint16) * (
        img > 0
    )


def host_planes(img: np.ndarray, fmt: str, matrix: int, full: bool) -> np.ndarray:
    """swscale's exact BGR -> YUV conversion (the sink's), as samples."""
    src = "bgr48le" if img.dtype == np.uint16 else "bgr24"
    m = sws_matrix(matrix)
    frame = av.VideoFrame.from_ndarray(img, format=src).reformat(
        format=fmt,
        src_colorspace=m,
        dst_colorspace=m,
        src_color_range=2,
        dst_color_range=2 if full else 1,
        interpolation=SWS_FLAGS,
    )
    return frame_samples(frame)


def _assert_close(got: np.ndarray, want: np.ndarray, scale: float = 1.0, p999: float = 1.0):
    """Equal but for rounding: under 0.1 code values apart on average, at most `p999` at the
    99.9th percentile (differences in code values times `scale`)."""
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64)) * scale
    assert diff.mean() < 0.1 and np.percentile(diff, 99.9) <= p999, (diff.mean(), diff.max())


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("matrix,full", MATRICES)
def test_made_frames_to_planes_is_the_host_conversion(fmt, matrix, full):
    """Made frames to the encoder's format on the device: swscale's levels (8-bit frames to the
    8-bit formats, 16-bit frames to the 10-bit ones, as plane_format pairs them)."""
    lay = LAYOUTS[fmt]
    full = full or full_range_format(fmt)  # swscale takes yuvj formats as full range
    img = photo(8 if lay.bits == 8 else 16)
    levels = 255 if img.dtype == np.uint8 else 65535
    want = host_planes(img, fmt, matrix, full)
    x = torch.from_numpy(img.astype(np.float32) / levels).permute(2, 0, 1)[None]
    got = bgr_to_planes(x, PlaneFormat(fmt, matrix, full, levels))[0].numpy()
    if got.dtype == np.int16:
        got = got.view(np.uint16)
    assert got.shape == want.shape
    shift = 6 if lay.msb else 0
    _assert_close(got >> shift, want >> shift)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("matrix,full", MATRICES)
def test_decoded_planes_to_bgr_is_the_host_conversion(fmt, matrix, full):
    """Pictures in each format (centred chroma, as swscale writes them) to the network's BGR: the
    levels swscale's exact conversion gives (bgr24, or bgr48le above 8 bits, whose white is
    0xff00), but for rounding; in 8-bit levels."""
    lay = LAYOUTS[fmt]
    full = full or full_range_format(fmt)
    img = photo(8)
    pic_frame = frame_from_planes(
        Planes(host_planes(img, fmt, matrix, full), fmt, img.shape[1], img.shape[0])
    )
    h, w = pic_frame.height, pic_frame.width
    out = "bgr24" if lay.bits == 8 else "bgr48le"
    want = pic_frame.reformat(
        format=out,
        src_colorspace=sws_matrix(matrix),
        src_color_range=2 if full else 1,
        dst_color_range=2,
        interpolation=SWS_FLAGS,
    ).to_ndarray()
    pic = Yuv420(frame_samples(pic_frame), h, w, matrix, full, lay.interleaved, pix_fmt=fmt)
    pic.cosited = chroma_cosited(pic, want)
    assert pic.cosited == (lay.sub_x == 0)  # centred, where there is a siting at all
    data = torch.from_numpy(pic.data.view(np.int16) if lay.bits > 8 else pic.data)
    top = 255 if lay.bits == 8 else 65535
    got = (yuv420_to_bgr(pic, data)[0].permute(1, 2, 0).numpy() * top).round()
    _assert_close(got, want, 255 / top, 1.5)


@pytest.mark.parametrize("codec", ["ffv1", "libx264"])
def test_ten_bit_decoded_pictures_both_sitings(tmp_path, codec):
    """A 10-bit photo decoded from FFV1 (centred chroma) and H.264 (co-sited): the siting found
    and the BGR levels are swscale's."""
    img16 = photo(16)
    h, w = img16.shape[:2]
    rgb = np.ascontiguousarray(img16[:, :, ::-1])
    path = make_video(
        tmp_path / "a.mkv", n=1, w=w, h=h, codec=codec, pix_fmt="yuv420p10le", frames=[rgb]
    )
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    want = host_bgr16(frame, 6, False)
    pic = Yuv420(frame_samples(frame), h, w, 6, False, False, pix_fmt="yuv420p10le")
    pic.cosited = chroma_cosited(pic, want)
    assert pic.cosited == (codec == "libx264")
    got = yuv420_to_bgr(pic, torch.from_numpy(pic.data.view(np.int16)))[0].permute(1, 2, 0)
    _assert_close((got.numpy() * 65535).round(), want, 255 / 65535, 1.5)


def host_bgr16(frame: av.VideoFrame, matrix: int, full: bool) -> np.ndarray:
    return frame.reformat(
        format="bgr48le",
        src_colorspace=sws_matrix(matrix),
        src_color_range=2 if full else 1,
        dst_color_range=2,
        interpolation=SWS_FLAGS,
    ).to_ndarray()


def test_planes_round_trip_through_a_frame():
    """frame_samples and frame_from_planes are each other's inverse, padded rows or not."""
    rng = np.random.default_rng(3)
    for fmt, lay in LAYOUTS.items():
        w, h = 70, 36  # a width whose rows FFmpeg pads
        rows = h + 2 * ((h >> lay.sub_y) * (w >> lay.sub_x)) // w
        data = rng.integers(0, 1 << lay.bits, (rows, w)).astype(lay.dtype) << (6 if lay.msb else 0)
        frame = frame_from_planes(Planes(data, fmt, w, h))
        assert frame.format.name == fmt
        assert np.array_equal(frame_samples(frame), data)


def _spy_planes(monkeypatch) -> list:
    """The frames the sink built from the device's planes."""
    made = []

    def spy(planes):
        made.append(planes)
        return frame_from_planes(planes)

    monkeypatch.setattr(video_sink, "frame_from_planes", spy)
    return made


def test_ten_bit_pipeline_on_device_planes_both_ways(tmp_path, monkeypatch):
    """A 10-bit source: planes up, the encoder's 10-bit planes down, the same frames as the host
    path's but for rounding."""
    rng = np.random.default_rng(2)
    frames = [
        (rng.integers(0, 60000, (9, 16, 3)).repeat(8, 0).repeat(8, 1)).astype(np.uint16)
        for _ in range(4)
    ]
    src = make_video(tmp_path / "a.mkv", n=4, codec="ffv1", pix_fmt="yuv420p10le", frames=frames)
    made = _spy_planes(monkeypatch)
    host, device, _, _ = run_both(tmp_path, monkeypatch, src, exp=1, scene_threshold=0)
    h16 = decode(tmp_path / "host.mkv", "rgb48le")[0]
    d16 = decode(tmp_path / "device.mkv", "rgb48le")[0]
    assert device.frames_out == host.frames_out == 8
    assert made and all(p.pix_fmt == "yuv420p10le" for p in made)
    s16 = decode(src, "rgb48le")[0]
    for i, f in enumerate(s16):
        assert np.array_equal(d16[2 * i], f)  # passed through untouched
    for a, b in zip(h16, d16):
        diff = np.abs(a.astype(int) - b.astype(int)) / 257
        assert diff.mean() < 0.1 and diff.max() <= 2


def test_eight_bit_pipeline_writes_device_planes(tmp_path, monkeypatch):
    """An 8-bit source into x264: the made frames reach the encoder as yuv420p planes (no BGR,
    no swscale), equal to the host path's output but for rounding."""
    src = make_video(tmp_path / "a.mp4", n=6)
    made = _spy_planes(monkeypatch)
    host = interpolate_blended(src, tmp_path / "host.mkv", codec="ffv1", exp=1)
    monkeypatch.setattr(Interpolator, "device_colour", property(lambda self: True))
    device = interpolate_blended(src, tmp_path / "device.mkv", codec="ffv1", exp=1)
    assert device.frames_out == host.frames_out == 12
    assert len(made) == 5 and all(p.pix_fmt == "yuv420p" for p in made)
    assert all(p.data.nbytes == 128 * 72 * 3 // 2 for p in made)  # half of BGR's bytes
    h_frames = decode(tmp_path / "host.mkv", "yuv420p")[0]
    d_frames = decode(tmp_path / "device.mkv", "yuv420p")[0]
    for a, b in zip(h_frames, d_frames):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 0.05 and diff.max() <= 1


def test_depths_apart_keep_bgr_out(tmp_path, monkeypatch, device_colour):
    """An 8-bit source into a 10-bit encoder format: made frames go out as BGR (swscale's), as
    plane_format pairs only like depths."""
    src = make_video(tmp_path / "a.mkv", n=3, codec="ffv1")
    made = _spy_planes(monkeypatch)
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", pix_fmt="yuv420p10le")
    assert s.frames_out == 6 and not made
