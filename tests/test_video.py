"""The video pipeline on synthetic clips, with a linear-blend stand-in for the network."""

from __future__ import annotations

import threading
from fractions import Fraction

import cv2
import numpy as np
import pytest
from clips import blend_engine, decode, interpolate_blended, make_video, moving_frame

from rife_cli.errors import OutputError, UsageError
from rife_cli.pipeline import interpolate_video


def no_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".rife-part" in p.name]


def test_exp2_rate_duration_audio(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=25, audio=True)
    s = interpolate_blended(src, exp=2)
    out = tmp_path / "a_4x_100fps.mp4"
    assert s.output == str(out)
    _, times, info = decode(out)
    assert info["rate"] == 100 and info["frames"] == 100 == s.frames_out
    assert times == [Fraction(i, 100) for i in range(100)]
    assert abs(info["duration"] - 1.0) < 0.03
    assert info["audio"][0][0] == "aac" and abs(info["audio"][0][1] - 1.0) < 0.05
    assert no_leftovers(tmp_path) == []


def test_fps_60_from_25(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=25)
    s = interpolate_blended(src, tmp_path / "o.mkv", fps="60")
    frames, times, info = decode(tmp_path / "o.mkv")
    assert info["rate"] == 60 and len(frames) == 60 and s.fps_out == "60"
    assert abs(times[-1] - Fraction(59, 60)) <= Fraction(1, 1000)  # Matroska keeps milliseconds


def test_ntsc_rate_is_exact(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=12, rate=Fraction(24000, 1001))
    interpolate_blended(src, tmp_path / "o.mp4", fps="59.94")
    frames, _, info = decode(tmp_path / "o.mp4")
    assert info["rate"] == Fraction(60000, 1001)
    assert len(frames) == 30  # 12 frames at 24000/1001 last 0.5005 s: 30 frames at 60000/1001


def test_passthrough_frames_are_the_source(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=10, codec="ffv1", pix_fmt="yuv420p")
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1")
    s_frames, _, _ = decode(src, fmt="yuv420p")
    o_frames, _, _ = decode(tmp_path / "o.mkv", fmt="yuv420p")
    for i, f in enumerate(s_frames):
        assert np.array_equal(o_frames[2 * i], f)  # lossless: bit-identical


def bars(w, h):
    colours = [
        (235, 235, 235),
        (235, 235, 16),
        (16, 235, 235),
        (16, 235, 16),
        (235, 16, 235),
        (235, 16, 16),
        (16, 16, 235),
        (16, 16, 16),
    ]
    img = np.zeros((h, w, 3), np.uint8)
    for k, c in enumerate(colours):
        img[:, k * w // 8 : (k + 1) * w // 8] = c
    return img


@pytest.mark.parametrize("w,h,colorspace", [(1280, 720, 1), (320, 240, None)])
def test_colour_bars_keep_their_colour(tmp_path, w, h, colorspace):
    frames = [bars(w, h)] * 4
    src = make_video(
        tmp_path / "bars.mkv", n=4, w=w, h=h, codec="ffv1", frames=frames, colorspace=colorspace
    )
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1")
    s_frames, _, _ = decode(src, fmt="yuv420p")
    o_frames, _, o_info = decode(tmp_path / "o.mkv", fmt="yuv420p")
    assert o_info["colorspace"] == (1 if colorspace == 1 else 6)
    assert o_info["color_range"] == 1
    for f in o_frames:  # made frames too: they went through RGB and back
        assert abs(f.astype(float) - s_frames[0].astype(float)).mean() < 1.0


def test_png_sequence_reference_convention(tmp_path):
    d = tmp_path / "seq"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"f{i + 1}.png"), moving_frame(i, 64, 48))
    cv2.imwrite(str(d / "f10.png"), moving_frame(6, 64, 48))  # natural order: 10 after 6
    s = interpolate_blended(d, tmp_path / "out", png=True, exp=1)
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2 * 7 - 1 == s.frames_out
    assert np.array_equal(cv2.imread(str(files[-1])), moving_frame(6, 64, 48))


def test_ten_bit_stays_ten_bit(tmp_path):
    frames = [moving_frame(i, 64, 48).astype(np.uint16) * 257 for i in range(6)]
    src = make_video(
        tmp_path / "a.mkv", n=6, w=64, h=48, codec="libx265", pix_fmt="yuv420p10le", frames=frames
    )
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="libx265")
    _, _, info = decode(tmp_path / "o.mkv", fmt="yuv420p10le")
    assert info["pix_fmt"] == "yuv420p10le"
    interpolate_blended(src, tmp_path / "png", png=True, exp=1)
    img = cv2.imread(str(sorted((tmp_path / "png").iterdir())[1]), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16


def test_scene_cut_is_not_blended(tmp_path):
    src = make_video(tmp_path / "a.mkv", n=10, codec="ffv1", cut_at=5)
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=2, codec="ffv1")
    assert s.scene_cuts == 1
    src_frames, _, _ = decode(src)
    out, _, _ = decode(tmp_path / "o.mkv")
    # output 16..19 lie between source 4 and 5: nearer source frame, never a blend
    for k, expect in ((17, 4), (18, 4), (19, 5)):
        assert np.array_equal(out[k], src_frames[expect]), k
    off = interpolate_blended(src, tmp_path / "o2.mkv", exp=2, codec="ffv1", scene_threshold=0)
    assert off.scene_cuts == 0


def test_static_frames_are_kept(tmp_path):
    frames = [moving_frame(0, 64, 48)] * 3 + [moving_frame(i, 64, 48) for i in range(3)]
    src = make_video(tmp_path / "a.mkv", n=6, w=64, h=48, codec="ffv1", frames=frames)
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1")
    assert s.frames_out == 12


def test_vfr_placed_by_timestamps(tmp_path):
    # frames at 0, 40, 80, 200, 240 ms: brightness proportional to time
    pts = [0, 40, 80, 200, 240]
    frames = [np.full((48, 64, 3), 20 + p // 2, np.uint8) for p in pts]
    level = {0: 19, 40: 39, 80: 60, 200: 119, 240: 139}  # as decoded (limited-range round trip)
    src = make_video(
        tmp_path / "v.mkv",
        n=5,
        w=64,
        h=48,
        codec="ffv1",
        pts=pts,
        time_base=Fraction(1, 1000),
        frames=frames,
        rate=Fraction(25),
    )
    s = interpolate_blended(src, tmp_path / "o.mkv", fps="50", codec="ffv1", scene_threshold=0)
    out, times, _ = decode(tmp_path / "o.mkv")
    for f, t in zip(out, times):
        ms = round(float(t) * 1000)
        lo = max(p for p in pts if p <= ms)
        hi = min((p for p in pts if p > ms), default=lo)
        expect = (
            level[lo] if hi == lo else level[lo] + (level[hi] - level[lo]) * (ms - lo) / (hi - lo)
        )
        assert abs(f.mean() - expect) <= 1.5, (ms, f.mean(), expect)  # two 8-bit roundings
    assert s.frames_out == len(out)


def test_slowmo_drops_audio(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=10, audio=True)
    warnings = []
    s = interpolate_blended(
        src,
        tmp_path / "o.mp4",
        exp=1,
        slowmo=True,
        warn=warnings.append,
    )
    _, _, info = decode(tmp_path / "o.mp4")
    assert info["rate"] == 25 and info["frames"] == 20 and info["audio"] == []
    assert any("audio" in w for w in warnings) and s.fps_out == "25"


def test_slowmo_says_it_drops_subtitles_and_chapters_too(tmp_path):
    from media import Clip, Track, make_clip

    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n")
    src = make_clip(
        tmp_path / "a.mkv", Clip(".mkv", n=10, audio=[Track()], subtitles=srt, chapters=True)
    )
    warnings = []
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, slowmo=True, warn=warnings.append)
    assert (
        "--slowmo: audio, subtitles and chapters dropped (their timing would not match the "
        "slowed video)"
    ) in warnings


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path):
    src = make_video(tmp_path / "a.mkv", n=10, audio=True, audio_codec="aac")
    warnings = []
    interpolate_blended(
        src,
        tmp_path / "o.webm",
        exp=1,
        codec="libvpx-vp9",
        warn=warnings.append,
    )  # this FFmpeg decodes VP9, not AV1
    _, _, info = decode(tmp_path / "o.webm")
    assert info["audio"][0][0] == "opus"
    assert any("re-encoded" in w for w in warnings)


def test_montage_left_half_is_original(tmp_path):
    src = make_video(tmp_path / "a.mkv", n=4, codec="ffv1")
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", montage=True)
    s, _, _ = decode(src)
    o, _, _ = decode(tmp_path / "o.mkv")
    assert abs(o[1][:, :60].astype(int) - s[0][:, :60]).mean() < 2


def test_existing_output_needs_force(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=4)
    (tmp_path / "o.mp4").write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--force"):
        interpolate_blended(src, tmp_path / "o.mp4")
    assert (tmp_path / "o.mp4").read_bytes() == b"keep me"
    interpolate_blended(src, tmp_path / "o.mp4", force=True)
    assert decode(tmp_path / "o.mp4")[2]["frames"] == 8


def test_usage_errors(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=4)
    with pytest.raises(UsageError, match="below the source rate"):
        interpolate_blended(src, fps="20")
    with pytest.raises(UsageError, match="exclude"):
        interpolate_blended(src, exp=1, fps="60")
    with pytest.raises(UsageError, match="cannot go into"):
        interpolate_blended(src, tmp_path / "o.webm", codec="libx264")


def test_failure_leaves_nothing_and_no_threads(tmp_path):
    src = make_video(tmp_path / "a.mp4", n=10)
    engine = blend_engine()
    calls = {"n": 0}
    real = engine.make_unchecked

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*a, **k)

    engine.make_unchecked = failing
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom"):
        interpolate_video(src, tmp_path / "o.mp4", engine_factory=lambda n: engine, exp=1)
    assert not (tmp_path / "o.mp4").exists()
    assert no_leftovers(tmp_path) == []
    assert threading.active_count() == before


def with_subtitles_and_chapters(tmp_path):
    from fractions import Fraction as Fr

    import av

    srt = tmp_path / "s.srt"
    srt.write_text(
        "1\n00:00:00,100 --> 00:00:00,500\nHello\n\n2\n00:00:00,600 --> 00:00:00,900\nWorld\n"
    )
    path = tmp_path / "sub.mkv"
    with av.open(str(srt)) as sub, av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        so = c.add_stream_from_template(sub.streams.subtitles[0])
        for i in range(25):
            f = av.VideoFrame.from_ndarray(moving_frame(i, 64, 48), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for p in sub.demux(sub.streams.subtitles[0]):
            if p.size:
                p.stream = so
                c.mux(p)
        c.set_chapters(
            [
                {
                    "id": 1,
                    "start": 0,
                    "end": 500,
                    "time_base": Fr(1, 1000),
                    "metadata": {"title": "one"},
                }
            ]
        )
    return path


def test_subtitles_and_chapters_are_carried(tmp_path):
    import av

    src = with_subtitles_and_chapters(tmp_path)
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1")
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "subtitle"]
        assert sum(1 for p in c.demux(c.streams.subtitles[0]) if p.size) == 2
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["one"]
    warnings = []
    interpolate_blended(
        src,
        tmp_path / "o.mp4",
        exp=1,
        warn=warnings.append,
    )
    with av.open(str(tmp_path / "o.mp4")) as c:  # SubRip cannot go into MP4: mov_text can
        subs = c.streams.subtitles[0]
        assert subs.codec_context.name == "mov_text"
        cues = [bytes(p) for p in c.demux(subs) if p.size and bytes(p).strip(b"\0")]
        assert len(cues) == 2
    assert any("converted to mov_text" in w for w in warnings), warnings


def test_force_never_deletes_a_foreign_folder(tmp_path):
    d = tmp_path / "seq"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), moving_frame(i, 32, 32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(OutputError, match="other files"):
        interpolate_blended(d, out, png=True, force=True)
    assert (out / "holiday.jpg").read_bytes() == b"precious"
    with pytest.raises(UsageError, match="inside the input"):
        interpolate_blended(d, d / "sub", png=True)
    interpolate_blended(d, tmp_path / "mine", png=True)
    s = interpolate_blended(d, tmp_path / "mine", png=True, force=True)  # our own frames: replaced
    assert s.frames_out == 5


@pytest.mark.parametrize(
    "name,codec", [("o.webm", None), ("o.mp4", "libsvtav1"), ("o.mov", "prores_ks")]
)
def test_every_offered_encoder_muxes(tmp_path, name, codec):
    """AV1 (the .webm default) too, although this FFmpeg cannot decode it: count its packets."""
    import av

    src = make_video(tmp_path / "a.mp4", n=6, audio=True)
    s = interpolate_blended(src, tmp_path / name, exp=1, codec=codec)
    with av.open(str(tmp_path / name)) as c:
        packets = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        assert c.streams.audio
    assert packets == s.frames_out == 12


@pytest.mark.parametrize("pix_fmt,device_fmt", [("yuv420p", "nv12"), ("yuv420p10le", "p010le")])
def test_frames_as_a_hardware_decoder_returns_them(tmp_path, monkeypatch, pix_fmt, device_fmt):
    """With --hwaccel cuda, NVDEC's frames reach the host as NV12 (P010 above 8 bits), not in the
    stream's own format: passed-through frames must still be the source's and made ones the same
    as from software decoding. (Here the hardware is stood in for by repacking the decoded frames.)"""
    from rife_cli.video import source

    frames = [moving_frame(i, 64, 48) for i in range(6)]
    if pix_fmt.endswith("10le"):
        frames = [f.astype(np.uint16) * 257 for f in frames]
    src = make_video(
        tmp_path / "a.mkv", n=6, w=64, h=48, codec="ffv1", pix_fmt=pix_fmt, frames=frames
    )
    interpolate_blended(src, tmp_path / "soft.mkv", exp=1, codec="ffv1")
    software = source._decode_tolerant

    def device_frames(*args):
        for frame in software(*args):
            assert frame.format.name == pix_fmt
            yield frame.reformat(format=device_fmt)

    monkeypatch.setattr(source, "_decode_tolerant", device_frames)
    interpolate_blended(src, tmp_path / "hw.mkv", exp=1, codec="ffv1")
    s_frames, _, _ = decode(src, fmt=pix_fmt)
    soft, _, _ = decode(tmp_path / "soft.mkv", fmt=pix_fmt)
    hw, _, info = decode(tmp_path / "hw.mkv", fmt=pix_fmt)
    assert info["pix_fmt"] == pix_fmt and len(hw) == len(soft) == 12
    for i, (a, b) in enumerate(zip(soft, hw)):
        assert np.array_equal(a, b), i
    for i, f in enumerate(s_frames):
        assert np.array_equal(hw[2 * i], f)


def test_hwaccel_cuda_decodes_or_says_why_not(tmp_path):
    """NVDEC where there is one (the same frames as software decoding); elsewhere a usage error
    before any work, naming the way out, and no output."""
    src = make_video(tmp_path / "a.mp4", n=6)
    soft = interpolate_blended(src, tmp_path / "soft.mkv", exp=1, codec="ffv1")
    assert soft.hwaccel is None
    try:
        hw = interpolate_blended(src, tmp_path / "hw.mkv", exp=1, codec="ffv1", hwaccel="cuda")
    except UsageError as exc:
        assert "--hwaccel cuda: no cuda video decoder on this machine" in str(exc)
        assert "leave --hwaccel out" in str(exc) and "\n" not in str(exc)
        assert not (tmp_path / "hw.mkv").exists() and not no_leftovers(tmp_path)
        return
    assert hw.hwaccel == "cuda"
    assert [
        np.array_equal(a, b)
        for a, b in zip(decode(tmp_path / "soft.mkv")[0], decode(tmp_path / "hw.mkv")[0])
    ] == [True] * 12
