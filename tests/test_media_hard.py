"""The media matrix, harder files: interlaced video (tff and bff, in TS, MOV and MKV), a picture
size that changes mid-stream, 4:4:4 at an odd size, 4:2:2 and 12-bit, cover art and a second
video stream; each made with PyAV and run through `interpolate_video` with default options."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import make_video
from media import (
    Clip,
    add_cover,
    cover_picture,
    make_clip,
    make_interlaced,
    make_progressive,
    make_size_change,
    read_media,
    weave,
)
from test_media_matrix import recording_engine

from rife_cli.pipeline import interpolate_video
from rife_cli.video.filters import COMBED_MIN, FieldVerdict, combing, examine


def interpolate(src: Path, out: Path, **options):
    timesteps: list[Fraction] = []
    warnings: list[str] = []
    summary = interpolate_video(
        src, out, engine_factory=lambda need: recording_engine(timesteps),
        warn=warnings.append, **options,
    )  # fmt: skip
    return summary, timesteps, warnings


def lumas(path: Path) -> list[np.ndarray]:
    """Each decoded picture's luma plane, as stored."""
    with av.open(str(path)) as c:
        return [f.reformat(format="gray").to_ndarray() for f in c.decode(video=0)]


def truth_luma(rgb: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="gray").to_ndarray()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def combing_ratio(frames: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Combing of the frames against that of the progressive pictures they show."""
    return float(np.mean([combing(f) for f in frames]) / np.mean([combing(t) for t in truth]))


ORDER = {"tff": "top field first", "bff": "bottom field first"}


@pytest.mark.parametrize("order", ["tff", "bff"])
@pytest.mark.parametrize("ext", [".ts", ".mov", ".mkv"])
def test_interlaced_source_becomes_one_progressive_frame_per_field(tmp_path, ext, order):
    src = tmp_path / f"in{ext}"
    fields = make_interlaced(src, order)
    truth = [truth_luma(f) for f in fields]
    # the progressive clip the fields came from, with the same coding noise
    reference = lumas(make_progressive(tmp_path / "ref.mkv", fields))
    summary, timesteps, warnings = interpolate(src, tmp_path / "o.mkv")
    assert ORDER[order] in summary.deinterlaced and "bwdif" in summary.deinterlaced
    # 25i --exp 1 is 50p, every frame a field: the network makes none
    assert summary.fps_in == "25" and summary.fps_out == "50"
    assert summary.frames_in == 12 and summary.frames_out == 24
    assert timesteps == [] and warnings == []
    out = lumas(tmp_path / "o.mkv")
    assert len(out) == 24
    inner = slice(1, -1)  # the first and last fields have a neighbour on one side only
    # measured: 3.1-3.3x the reference's (bwdif's own), where the woven frames are 137x
    ratios = [combing_ratio([a], [b]) for a, b in zip(out[inner], reference[inner])]
    assert np.mean(ratios) < 4.5 and max(ratios) < 10, ratios
    assert min(psnr(a, b) for a, b in zip(out[inner], truth[inner])) > 32
    media = read_media(tmp_path / "o.mkv")
    assert media.rate == 50
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.field_order == 1  # AV_FIELD_PROGRESSIVE
    # the same file taken as progressive: every frame combed, as before this existed
    summary, _, _ = interpolate(src, tmp_path / "p.mkv", deinterlace="off")
    assert summary.deinterlaced == "" and summary.frames_out == 24
    woven = lumas(tmp_path / "p.mkv")[::2]  # the source frames, passed through
    assert min(combing_ratio([a], [b]) for a, b in zip(woven, reference[::2])) > 40
    assert max(psnr(a, b) for a, b in zip(woven, truth[::2])) < 26


def test_interlaced_exp_2_makes_a_frame_between_fields(tmp_path):
    src = tmp_path / "in.mkv"
    make_interlaced(src, "tff")
    summary, timesteps, _ = interpolate(src, tmp_path / "o.mkv", exp=2)
    assert summary.fps_out == "100" and summary.frames_out == 48
    assert set(timesteps) == {Fraction(1, 2)} and len(timesteps) == 23  # one per field pair
    media = read_media(tmp_path / "o.mkv")
    assert abs(media.duration - Fraction(12, 25)) <= Fraction(1, 1000)


def test_a_missing_field_order_is_said_not_guessed(tmp_path):
    src = tmp_path / "in.mkv"
    make_interlaced(src, "bff", flag=False, codec="ffv1")  # woven fields; no field order stated
    verdict = examine(src)
    assert verdict.flagged == 0 and verdict.stream_order == 0 and verdict.idet_interlaced
    summary, _, warnings = interpolate(src, tmp_path / "o.mkv")
    assert summary.deinterlaced == ""
    assert len(warnings) == 1 and "--deinterlace on deinterlaces it" in warnings[0]
    summary, _, _ = interpolate(src, tmp_path / "on.mkv", deinterlace="on")
    assert summary.deinterlaced.startswith("bwdif, bottom field first (--deinterlace on)")


def test_stated_progressive_is_left_alone_with_a_word_when_idet_disagrees(tmp_path):
    src = tmp_path / "in.mkv"
    make_interlaced(src, "bff", flag=False)  # woven fields, coded as progressive pictures
    summary, _, warnings = interpolate(src, tmp_path / "o.mkv")
    assert summary.deinterlaced == "" and summary.frames_out == 24
    assert len(warnings) == 1 and "--deinterlace on deinterlaces it" in warnings[0]
    summary, _, _ = interpolate(src, tmp_path / "on.mkv", deinterlace="on")
    assert summary.deinterlaced.startswith("bwdif, bottom field first (--deinterlace on)")
    plain = make_clip(tmp_path / "p.mkv", Clip(".mkv", n=16))
    summary, _, warnings = interpolate(plain, tmp_path / "po.mkv")
    assert summary.deinterlaced == "" and summary.frames_out == 32 and warnings == []
    summary, _, _ = interpolate(plain, tmp_path / "pf.mkv", deinterlace="on")
    assert "--deinterlace on" in summary.deinterlaced and summary.frames_out == 32


def test_sharp_synthetic_progressive_pictures_draw_no_interlace_warning(tmp_path):
    """FFmpeg's testsrc2 (what many try a tool on first): idet calls every picture interlaced,
    but the pictures are less combed than their own fields, so nothing is said; woven fields of
    the same pictures still are."""
    src = tmp_path / "testsrc2.mp4"
    graph = av.filter.Graph()
    graph.add("testsrc2", "size=320x180:rate=30").link_to(graph.add("buffersink"))
    graph.configure()
    pictures = [graph.pull().to_ndarray(format="rgb24") for _ in range(40)]
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 320, 180, "yuv420p"
        for p in pictures:
            c.mux(v.encode(av.VideoFrame.from_ndarray(p, format="rgb24")))
        c.mux(v.encode())
    verdict = examine(src)
    assert verdict.idet_interlaced and verdict.combed < 1 and not verdict.suspect
    summary, _, warnings = interpolate(src, tmp_path / "o.mkv")
    assert warnings == [] and summary.deinterlaced == "" and summary.frames_out == 80
    woven = tmp_path / "woven.mkv"
    with av.open(str(woven), "w") as c:
        v = c.add_stream("ffv1", rate=15)
        v.width, v.height, v.pix_fmt = 320, 180, "yuv420p"
        for k in range(20):
            frame = weave(pictures[2 * k], pictures[2 * k + 1], "tff")
            c.mux(v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(v.encode())
    verdict = examine(woven)
    assert verdict.combed > COMBED_MIN and verdict.suspect


def test_field_verdict_rules():
    # flagged, a still picture (idet cannot tell): the flag decides, each frame's order
    still = FieldVerdict(frames=20, flagged=20, tff=0, bff=0, progressive=1)
    assert still.decide("auto").order == "auto" and still.decide("off") is None
    # flagged, idet finds progressive pictures (progressive content in an interlaced encode)
    assert FieldVerdict(20, 20, 0, 0, 19).decide("auto") is None
    assert FieldVerdict(20, 20, 0, 0, 19).decide("on").order == "auto"
    # a parser's stream-level guess (tt) against idet's bff: idet's order
    assert FieldVerdict(20, 20, 1, 17, 0, stream_order=2).decide("auto").order == "bff"
    # stated progressive, idet says interlaced: left alone, but suspect (a warning)
    sharp = FieldVerdict(20, 0, 20, 0, 0, stream_order=1)
    assert sharp.decide("auto") is None and sharp.suspect
    assert sharp.decide("on").order == "tff"
    # nothing stated: idet alone is said, not acted on
    assert FieldVerdict(20, 0, 3, 15, 1).decide("auto") is None
    assert FieldVerdict(20, 0, 3, 15, 1).suspect
    assert FieldVerdict(20, 0, 3, 15, 1).decide("on").order == "bff"
    assert not FieldVerdict(20, 0, 8, 0, 5).suspect
    # idet's combing without a flag, where the pictures are not more combed than their fields
    assert not FieldVerdict(20, 0, 3, 15, 1, combed=0.5).suspect
    assert FieldVerdict(20, 0, 3, 15, 1, combed=8.0).suspect
    assert FieldVerdict(20, 0, 0, 0, 2).decide("on").order == "tff"


def test_a_size_change_mid_stream_keeps_every_frame_and_is_a_cut(tmp_path):
    src = make_size_change(tmp_path / "in.ts", [(64, 48, 8), (32, 32, 8)])
    summary, timesteps, warnings = interpolate(src, tmp_path / "o.mkv")
    assert summary.frames_in == 16 and summary.frames_out == 32
    assert summary.resized_frames == 8
    said = [w for w in warnings if "32x32" in w]
    assert len(said) == 1 and "from frame 8 (0.32 s)" in said[0] and "scaled to 64x48" in said[0]
    assert len(timesteps) == 14  # 15 pairs, none across the change
    out = lumas(tmp_path / "o.mkv")
    assert len(out) == 32 and out[20].shape == (48, 64)
    # 32x32 shown as 48x48 in the middle of 64x48: black bars of 8 pixels either side
    assert out[20][:, :6].max() <= 20 and out[20][:, -6:].max() <= 20
    assert out[20][:, 8:56].max() > 100


def test_odd_4_4_4_stays_4_4_4_and_a_subsampled_format_crops_a_pixel(tmp_path):
    clip = Clip(".mkv", w=53, h=41, pix_fmt="yuv444p", n=8)
    src = make_clip(tmp_path / "in.mkv", clip)
    summary, _, warnings = interpolate(src, tmp_path / "o.mkv")
    media = read_media(tmp_path / "o.mkv")
    assert media.pix_fmt == "yuv444p" and warnings == []
    assert lumas(tmp_path / "o.mkv")[0].shape == (41, 53)
    summary, _, warnings = interpolate(src, tmp_path / "c.mp4", pix_fmt="yuv420p")
    assert summary.frames_out == 16
    assert len(warnings) == 1 and "53x41 is odd" in warnings[0] and "(52x40)" in warnings[0]
    assert lumas(tmp_path / "c.mp4")[0].shape == (40, 52)


@pytest.mark.parametrize(
    "pix_fmt,codec,out,expect,notice",
    [
        ("yuv422p10le", "libx264", ".mp4", "yuv422p10le", None),
        ("yuv422p", "libx264", ".mkv", "yuv422p", None),
        ("yuv444p", "libx264", ".mov", "yuv444p", None),
        ("yuv420p12le", "libx265", ".mp4", "yuv420p10le", "4:2:0 12-bit"),
        ("yuv422p10le", "libx264", ".webm", "yuv420p10le", "4:2:2 10-bit"),
    ],
)
def test_chroma_format_and_depth_follow_the_source(tmp_path, pix_fmt, codec, out, expect, notice):
    clip = Clip(".mkv", codec, pix_fmt=pix_fmt, n=6)
    src = make_clip(tmp_path / "in.mkv", clip)
    summary, _, warnings = interpolate(src, tmp_path / f"o{out}")
    assert read_media(Path(summary.output)).pix_fmt == expect
    if notice is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and notice in warnings[0] and expect in warnings[0], warnings


@pytest.mark.parametrize("codec", ["mjpeg", "png"])
@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_cover_art_is_kept(tmp_path, ext, codec):
    picture = cover_picture(codec)
    plain = make_video(tmp_path / "plain.mp4", n=8, w=64, h=48)
    src = add_cover(plain, tmp_path / f"in{ext}", picture, codec)
    for out in (".mp4", ".mkv"):
        summary, _, warnings = interpolate(src, tmp_path / f"o{out}")
        assert summary.frames_out == 16 and warnings == []
        with av.open(summary.output) as c:
            video = [s for s in c.streams.video]
            assert len(video) == 2
            cover = video[1]
            assert cover.disposition & av.stream.Disposition.attached_pic
            got = [bytes(p) for p in c.demux(cover) if p.size]
        assert got == [picture]
    summary, _, warnings = interpolate(src, tmp_path / "o.mov")
    assert warnings == [f"dropped, as .mov cannot hold them: cover picture ({codec})"]


def test_cover_first_is_not_taken_for_the_video(tmp_path):
    picture = cover_picture()
    plain = make_video(tmp_path / "plain.mp4", n=8, w=64, h=48)
    src = tmp_path / "in.mp4"
    with av.open(str(plain)) as s, av.open(str(src), "w", format="mp4") as c:
        cover = c.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        v = c.add_stream_from_template(s.streams.video[0], opaque=True)
        p = av.Packet(picture)
        p.stream = cover
        c.mux(p)
        for p in s.demux(s.streams.video[0]):
            if p.size:
                p.stream = v
                c.mux(p)
    summary, _, warnings = interpolate(src, tmp_path / "o.mp4")
    assert summary.frames_in == 8 and summary.frames_out == 16 and warnings == []
    media = read_media(tmp_path / "o.mp4")
    assert media.frames == 16


def test_a_second_real_video_stream_is_dropped_with_a_warning(tmp_path):
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w", format="matroska") as c:
        streams = []
        for w in (64, 32):
            v = c.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = w, 32, "yuv420p"
            streams.append(v)
        for i in range(8):
            for v in streams:
                img = np.full((32, v.width, 3), 10 * i, np.uint8)
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = i
                c.mux(v.encode(f))
        for v in streams:
            c.mux(v.encode(None))
    summary, _, warnings = interpolate(src, tmp_path / "o.mkv")
    assert summary.frames_out == 16
    assert warnings == ["video track 1 (h264) dropped: rife makes one video stream (from track 0)"]
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.type for s in c.streams] == ["video"]
        assert c.streams.video[0].width == 64


def test_a_picture_too_small_to_tell_fields_apart_draws_no_interlace_warning():
    """idet called a 7x5 progressive FFV1 clip (FFmpeg's testsrc2) interlaced, and five rows
    cannot show combing: the second opinion must say no, not "cannot tell, so yes"."""
    from rife_cli.video.filters import combed_ratio

    rows = np.tile(np.array([[0], [255], [0], [255], [0]], np.uint8), (1, 7))  # as combed as can be
    assert combed_ratio(rows) == 0.0
    idet_says_interlaced = FieldVerdict(50, 0, 40, 0, 2, 0)
    assert idet_says_interlaced.idet_interlaced
    assert not replace(idet_says_interlaced, combed=combed_ratio(rows)).suspect
