"""The media matrix: files as people have them (made with PyAV in other containers, with rounded
timestamps, start offsets, B-frames, several tracks, rotation, anamorphic pixels, HDR) through
`interpolate_video` with default options, checked for what a user would notice: the frame rate
and count, the duration, the offset of every track to the video, the kept properties, and that
every made frame is an exact midpoint (so every source frame is passed through, never remade)."""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import blend_engine
from media import Clip, Track, make_clip, read_media, ts_recording

from rife_cli.doctor import nvenc_works
from rife_cli.pipeline import interpolate_video
from rife_cli.video import hdr

ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, \
Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, \
Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Test Sans,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,\
1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.10,0:00:00.40,Default,,0,0,0,,Hello
Dialogue: 0,0:00:00.50,0:00:00.60,Default,,0,0,0,,World
"""


def recording_engine(timesteps: list):
    """The linear-blend stand-in, recording every timestep it is asked for."""
    engine = blend_engine()
    make = engine.make_unchecked

    def recorded(a, b, requests, exact=False):
        timesteps.extend(r.t for r in requests)
        return make(a, b, requests, exact)

    engine.make_unchecked = recorded
    return engine


def run(tmp_path: Path, clip: Clip, output: str | None = None, **options):
    src = make_clip(tmp_path / f"in{clip.ext}", clip)
    timesteps: list[Fraction] = []
    warnings: list[str] = []
    summary = interpolate_video(
        src,
        None if output is None else tmp_path / output,
        engine_factory=lambda need: recording_engine(timesteps),
        warn=warnings.append,
        **options,
    )
    return read_media(src), read_media(Path(summary.output)), summary, timesteps, warnings


def audio_frame(codec: str | None, rate: int = 48000) -> Fraction:
    """One audio frame's length: the tolerance for a track's offset to the video."""
    samples = {"mp2": 1152, "libmp3lame": 1152, "mp3": 1152, "mp3float": 1152}.get(codec, 1024)
    if codec in ("opus", "libopus"):
        samples = 960
    return Fraction(samples, rate) + Fraction(1, 1000)


def check_doubled(source, out, summary, timesteps, clip: Clip) -> None:
    n = clip.n
    assert summary.frames_in == n
    assert timesteps and set(timesteps) == {Fraction(1, 2)}, sorted(set(timesteps))[:5]
    assert len(timesteps) == n - 1  # one midpoint per pair: source frames are passed through
    assert summary.frames_out == out.frames == 2 * n
    # every output frame on the doubled grid, within the container's millisecond rounding
    rate = 2 * clip.rate
    t0 = out.times[0]
    assert all(
        abs(t - t0 - Fraction(i) / rate) <= Fraction(1, 1000) for i, t in enumerate(out.times)
    )
    assert abs(out.duration - Fraction(n) / clip.rate) <= Fraction(1, 1000), out.duration


def check_tracks_in_sync(source, out) -> None:
    """Every track kept with its language, title and flags, and its source's offset to the video
    within one audio frame; a track that starts before the video starts with it (the output
    starts at the first video frame)."""
    assert len(out.tracks) == len(source.tracks)
    flags = any(t[5] or t[6] for t in source.tracks)  # MPEG-TS and AVI have none to keep
    for s, o in zip(source.tracks, out.tracks):
        assert s[0] == o[0] and (s[3] or "und") == (o[3] or "und") and s[4] == o[4], (s, o)
        if flags:
            assert s[5:] == o[5:], (s, o)
        if s[2] is not None:
            assert abs(o[2] - max(s[2], 0)) <= audio_frame(o[1]), (s, o)


CASES = {
    # id: (clip, expected output extension)
    "mkv-h264-23.976-aac": (Clip(".mkv", rate=Fraction(24000, 1001), audio=[Track()]), ".mkv"),
    "webm-vp9-30-opus": (
        Clip(".webm", "libvpx-vp9", Fraction(30), bframes=False, audio=[Track("libopus")]),
        ".webm",
    ),
    "mkv-h264-60": (Clip(".mkv", rate=Fraction(60), n=20, audio=[Track()]), ".mkv"),
    "mkv-h264-59.94-start-10s": (
        Clip(".mkv", rate=Fraction(60000, 1001), start=Fraction(10), audio=[Track()]),
        ".mkv",
    ),
    "mp4-h264-29.97-aac": (Clip(".mp4", rate=Fraction(30000, 1001), audio=[Track()]), ".mp4"),
    "mov-h264-50-pcm": (Clip(".mov", rate=Fraction(50), audio=[Track("pcm_s16le")]), ".mov"),
    "mov-h264-24-aac": (Clip(".mov", rate=Fraction(24), audio=[Track()]), ".mov"),
    "ts-h264-25-mp2-audio-first": (
        Clip(".ts", rate=Fraction(25), audio=[Track("mp2", offset=Fraction(-1, 50))]),
        ".mp4",
    ),
    "ts-h264-29.97-ac3": (
        Clip(".ts", rate=Fraction(30000, 1001), audio=[Track("ac3")]),
        ".mp4",
    ),
    "avi-mpeg4-25-mp3": (
        Clip(".avi", "mpeg4", Fraction(25), audio=[Track("libmp3lame", rate=44100)]),
        ".mp4",
    ),
    "mkv-negative-start": (
        Clip(".mkv", rate=Fraction(25), start=Fraction(-2, 25), negative_ts=True, audio=[Track()]),
        ".mkv",
    ),
    "mp4-audio-starts-late": (
        Clip(".mp4", rate=Fraction(25), n=20, audio=[Track(offset=Fraction(1, 4))]),
        ".mp4",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_media_matrix(tmp_path, case):
    clip, ext = CASES[case]
    source, out, summary, timesteps, _warnings = run(tmp_path, clip)
    assert Path(summary.output).suffix == ext
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    assert source.tracks and out.tracks[0][0] == "audio"


def test_audio_long_before_the_first_picture_is_cut_with_a_notice(tmp_path):
    # the output starts at the first picture: what audio came before it (0.5 s, and AAC priming)
    # is said, not dropped silently; a lead of one audio frame (priming, rounding) is not
    clip = Clip(".mkv", rate=Fraction(25), n=20, audio=[Track(offset=Fraction(-1, 2))])
    source, out, summary, timesteps, warnings = run(tmp_path, clip)
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    said = [w for w in warnings if "of audio came before its first picture" in w]
    assert len(said) == 1 and re.search(r"first 0\.(49|5[0-3]) s of audio", said[0]), warnings
    clip = Clip(".mkv", rate=Fraction(25), n=20, audio=[Track(offset=Fraction(-1, 50))])
    warnings = run(tmp_path, clip, "o2.mkv")[4]
    assert not [w for w in warnings if "before its first picture" in w], warnings


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mp4"])
def test_chapters_stay_with_the_pictures_when_the_audio_starts_first(tmp_path, ext):
    # An MP4 whose AAC starts 15 ms before the first picture (its priming not stated as a codec
    # delay): its first packet straddles the output's start, and Matroska's muxer moved every
    # packet 15 ms later but not the chapters. WebM re-encodes to Opus; MP4 keeps the negative
    # time in an edit list.
    clip = Clip(
        ".mp4", rate=Fraction(25), n=20, chapters=True, audio=[Track(offset=Fraction(-3, 200))]
    )
    source, out, *_ = run(tmp_path, clip, f"o{ext}")
    assert out.chapters == ["one", "two"]
    assert abs(out.chapter_starts[1] - source.chapter_starts[1]) <= Fraction(1, 1000), (
        source.chapter_starts,
        out.chapter_starts,
    )
    check_tracks_in_sync(source, out)


@pytest.mark.parametrize("codec,pix_fmt", [("ffv1", "yuva420p"), ("libvpx-vp9", "yuva420p")])
def test_a_source_with_alpha_is_said_to_lose_it(tmp_path, codec, pix_fmt):
    # The frames are made opaque; that is said, and a WebM's AlphaMode (which FFmpeg's own VP9
    # decoder reads past, giving yuv420p) is not copied onto the opaque output.
    ext = ".webm" if codec == "libvpx-vp9" else ".mkv"
    src = tmp_path / f"a{ext}"
    with av.open(str(src), "w") as c:
        v = c.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, pix_fmt
        for i in range(6):
            rgba = np.full((48, 64, 4), 40 * i, np.uint8)
            rgba[:, :32, 3] = 255
            c.mux(
                v.encode(av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format=pix_fmt))
            )
        c.mux(v.encode(None))
    warnings: list[str] = []
    out = tmp_path / f"o{ext}"
    interpolate_video(src, out, engine_factory=lambda need: blend_engine(), warn=warnings.append)
    assert [w for w in warnings if "alpha" in w] == [
        f"{src}: its alpha channel is dropped: rife writes opaque frames"
    ]
    with av.open(str(out)) as c:
        assert not {k.lower() for k in c.streams.video[0].metadata} & {"alpha_mode"}


def test_phone_video_keeps_its_rotation(tmp_path):
    clip = Clip(".mp4", rate=Fraction(30), rotation=90, audio=[Track()])
    source, out, summary, timesteps, _ = run(tmp_path, clip)
    assert source.rotation == 90
    assert out.rotation == 90
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    # and into Matroska, which stores it differently
    _, mkv, _, _, _ = run(tmp_path, clip, "o.mkv")
    assert mkv.rotation == 90


def test_anamorphic_pixels_stay_anamorphic(tmp_path):
    clip = Clip(".mkv", rate=Fraction(25), w=64, h=48, sar=Fraction(16, 11), audio=[Track()])
    source, out, _, _, _ = run(tmp_path, clip)
    assert source.sar == Fraction(16, 11)
    assert out.sar == Fraction(16, 11)
    _, mp4, _, _, _ = run(tmp_path, clip, "o.mp4")
    assert mp4.sar == Fraction(16, 11)


def test_every_track_with_its_language_title_and_flags(tmp_path):
    subs = tmp_path / "s.ass"
    subs.write_text(ASS)
    clip = Clip(
        ".mkv",
        rate=Fraction(24000, 1001),
        n=20,
        audio=[
            Track(language="jpn", title="Japanese", default=True),
            Track("libopus", language="eng", title="Commentary", default=False),
        ],
        subtitles=subs,
        attachment=("TestSans.ttf", "font/ttf", b"\x00\x01\x00\x00" + bytes(200)),
        title="Episode 1",
        chapters=True,
    )
    source, out, summary, timesteps, warnings = run(tmp_path, clip)
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    assert [t[3] for t in out.tracks] == ["jpn", "eng", "eng"]
    assert [t[5] for t in out.tracks[:2]] == [True, False]
    assert out.tracks[2][0] == "subtitle" and out.tracks[2][1] in ("ass", "ssa")
    assert out.tracks[2][6]  # forced
    assert out.attachments == ["TestSans.ttf"]
    assert out.chapters == ["one", "two"]
    assert abs(out.chapter_starts[1] - source.chapter_starts[1]) <= Fraction(1, 1000), (
        source.chapter_starts,
        out.chapter_starts,
    )
    assert out.title == "Episode 1"
    assert warnings == []
    # MP4 holds neither ASS nor attachments: the ASS becomes mov_text (said), its font is
    # dropped (said), the rest kept
    warnings.clear()
    _, mp4, _, _, warnings = run(tmp_path, clip, "o.mp4")
    assert [t[0] for t in mp4.tracks] == ["audio", "audio", "subtitle"]
    assert [t[3] for t in mp4.tracks] == ["jpn", "eng", out.tracks[2][3]]
    assert mp4.tracks[2][1] == "mov_text"
    assert mp4.title == "Episode 1"
    dropped = [w for w in warnings if "dropped" in w]
    assert len(dropped) == 1 and "TestSans.ttf" in dropped[0], warnings
    assert [w for w in warnings if "converted to mov_text for .mp4" in w], warnings


@pytest.mark.slow
@pytest.mark.parametrize("ext,codec", [(".mkv", "hevc"), (".webm", "dav1d")])
def test_ten_bit_hdr_hevc_stays_ten_bit_hdr(tmp_path, ext, codec):
    clip = Clip(".mkv", "libx265", Fraction(24), pix_fmt="yuv420p10le", hdr=True, audio=[Track()])
    source, out, summary, timesteps, _ = run(tmp_path, clip, f"o{ext}")
    check_doubled(source, out, summary, timesteps, clip)
    assert set(source.hdr_side_data) == {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"}
    assert out.pix_fmt == "yuv420p10le"
    assert out.colour == source.colour == (9, 9, 16)
    a, b = (
        hdr.parse(
            m.hdr_side_data["MASTERING_DISPLAY_METADATA"], m.hdr_side_data["CONTENT_LIGHT_LEVEL"]
        )
        for m in (source, out)
    )
    assert (a.max_cll, a.max_fall) == (b.max_cll, b.max_fall) == (1000, 400)
    # the same values, in each codec's own fixed point (HEVC's is the source's: byte for byte)
    for x, y in zip((*a.primaries, a.white, a.luminance), (*b.primaries, b.white, b.luminance)):
        assert all(abs(u - v) <= max(abs(u), 1) * Fraction(1, 5000) for u, v in zip(x, y)), (x, y)
    if codec == "hevc":
        assert out.hdr_side_data == source.hdr_side_data
    with av.open(summary.output) as c:
        # the default for HDR sources: HEVC, or AV1 in WebM
        assert codec in c.streams.video[0].codec_context.name


ENCODERS = ["libx264", "libx265", "libsvtav1", "ffv1", "prores_ks", "libvpx-vp9"]
CONTAINERS = [".mp4", ".mkv", ".mov", ".webm"]


def _holds(codec: str, ext: str) -> bool:
    from rife_cli.errors import UsageError
    from rife_cli.video.sink import EncodeOptions, prepare_encoding

    try:
        prepare_encoding(Path(f"x{ext}"), EncodeOptions(codec), 64, 48, Fraction(50), 8)
        return True
    except UsageError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("audio", [True, False], ids=["audio", "video-only"])
@pytest.mark.parametrize("ext", CONTAINERS)
@pytest.mark.parametrize("codec", ENCODERS)
def test_every_encoder_into_every_container(tmp_path, codec, ext, audio):
    clip = Clip(".mkv", rate=Fraction(25), n=10, audio=[Track()] if audio else [])
    if not _holds(codec, ext):
        with pytest.raises(Exception, match="cannot go into"):
            run(tmp_path, clip, f"o{ext}", codec=codec)
        return
    source, out, summary, timesteps, _ = run(tmp_path, clip, f"o{ext}", codec=codec)
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)


@pytest.mark.gpu
@pytest.mark.skipif(not nvenc_works("h264"), reason="no NVIDIA encoder opens on this machine")
@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
@pytest.mark.parametrize("codec", ["h264_nvenc", "hevc_nvenc"])
def test_nvenc_where_present(tmp_path, codec, ext):
    clip = Clip(".mkv", rate=Fraction(25), n=10, w=256, h=144, audio=[Track()])
    source, out, summary, timesteps, _ = run(tmp_path, clip, f"o{ext}", codec=codec)
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)


def test_codecs_a_container_cannot_write_are_refused_before_work():
    assert not _holds("libsvtav1", ".mov")  # FFmpeg lists AV1 for mov, then has no tag for it
    assert not _holds("libx264", ".webm")
    assert _holds("libsvtav1", ".webm") and _holds("prores_ks", ".mov")


def test_default_encoder_of_each_extension(tmp_path):
    from rife_cli.video.sink import DEFAULT_CODEC

    clip = Clip(".mkv", rate=Fraction(25), n=8, audio=[Track()])
    for ext, expect in ((".mp4", "h264"), (".mkv", "h264"), (".mov", "h264"), (".webm", "dav1d")):
        source, out, summary, timesteps, _ = run(tmp_path, clip, f"o{ext}")
        with av.open(summary.output) as c:
            assert expect in c.streams.video[0].codec_context.name, ext
        check_doubled(source, out, summary, timesteps, clip)
        check_tracks_in_sync(source, out)
    assert DEFAULT_CODEC["webm"] == "libsvtav1"


def test_a_data_track_is_left_out_with_one_warning_naming_it(tmp_path):
    import numpy as np

    src = tmp_path / "cam.ts"
    with av.open(str(src), "w", format="mpegts") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        d = c.add_data_stream("klv")  # camera metadata, as drones and broadcast cameras write
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
            p = av.Packet(b"\x06\x0e\x2b\x34" + bytes(12))
            p.stream, p.pts, p.dts, p.time_base = d, i * 3600, i * 3600, Fraction(1, 90000)
            c.mux(p)
        c.mux(v.encode(None))
    warnings: list[str] = []
    summary = interpolate_video(
        src, tmp_path / "o.mkv", engine_factory=lambda need: blend_engine(), warn=warnings.append
    )
    assert summary.frames_out == 20
    assert warnings == ["data track 1 (timecode, GPS or camera metadata) not carried over"]
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.type for s in c.streams] == ["video"]


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mp4"])
def test_segments_with_b_frames_join_into_one_stream(tmp_path, ext):
    # Matroska stores no decoding times: each segment's are rebuilt before the join
    clip = Clip(".mkv", rate=Fraction(24000, 1001), n=30, audio=[Track()])
    codec = "libsvtav1" if ext == ".webm" else "libx264"
    source, out, summary, timesteps, _ = run(
        tmp_path, clip, f"o{ext}", codec=codec, segment_frames=7, segment_seconds=0
    )
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    assert out.times == sorted(out.times)


def test_a_file_cut_off_mid_copy_comes_out_shorter_with_a_warning(tmp_path):
    from clips import make_video

    whole = make_video(tmp_path / "whole.mkv", n=100, w=64, h=48)
    cut = tmp_path / "cut.mkv"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 5])  # a download or copy that did not finish
    warnings: list[str] = []
    summary = interpolate_video(
        cut, tmp_path / "o.mkv", engine_factory=lambda need: blend_engine(), warn=warnings.append
    )
    assert 0 < summary.frames_in < 100 and summary.frames_out == 2 * summary.frames_in
    said = [w for w in warnings if "the rest could not be read" in w]
    assert len(said) == 1 and "of the 4.00 s the file states" in said[0]
    warnings.clear()
    interpolate_video(
        whole, tmp_path / "w.mkv", engine_factory=lambda need: blend_engine(), warn=warnings.append
    )
    assert warnings == []


# What the ffmpeg program (5.1) writes for 24 frames at each rate, read back with PyAV as
# read_media does: (average rate, duration) of the video stream (MP4/MOV: the stream's own;
# Matroska/WebM state none, so the file's). Made by hand with
#   ffmpeg -f lavfi -i testsrc=size=64x48:rate=R -frames:v 24 -c:v libx264 -bf 2 out.EXT
# (libvpx-vp9 for .webm); its frame times were i / R exactly in MP4/MOV, and i / R rounded to the
# millisecond (halves up) in Matroska/WebM, for every frame. See docs/media.md.
FFMPEG_WRITES = {
    ("mp4", "24000/1001"): ("24000/1001", "1001/1000"),
    ("mp4", "24"): ("24", "1"),
    ("mp4", "25"): ("25", "24/25"),
    ("mp4", "30000/1001"): ("30000/1001", "1001/1250"),
    ("mp4", "30"): ("30", "4/5"),
    ("mp4", "50"): ("50", "12/25"),
    ("mp4", "60000/1001"): ("60000/1001", "1001/2500"),
    ("mp4", "60"): ("60", "2/5"),
    ("mp4", "120"): ("120", "1/5"),
    ("mov", "24000/1001"): ("24000/1001", "1001/1000"),
    ("mov", "24"): ("24", "1"),
    ("mov", "25"): ("25", "24/25"),
    ("mov", "30000/1001"): ("30000/1001", "1001/1250"),
    ("mov", "30"): ("30", "4/5"),
    ("mov", "50"): ("50", "12/25"),
    ("mov", "60000/1001"): ("60000/1001", "1001/2500"),
    ("mov", "60"): ("60", "2/5"),
    ("mov", "120"): ("120", "1/5"),
    ("mkv", "24000/1001"): ("24000/1001", "1001/1000"),
    ("mkv", "24"): ("24", "1"),
    ("mkv", "25"): ("25", "24/25"),
    ("mkv", "30000/1001"): ("30000/1001", "4/5"),
    ("mkv", "30"): ("30", "4/5"),
    ("mkv", "50"): ("50", "12/25"),
    ("mkv", "60000/1001"): ("19001/317", "401/1000"),
    ("mkv", "60"): ("60", "2/5"),
    ("mkv", "120"): ("120", "1/5"),
    ("webm", "24000/1001"): ("24000/1001", "1001/1000"),
    ("webm", "24"): ("24", "1"),
    ("webm", "25"): ("25", "24/25"),
    ("webm", "30000/1001"): ("30000/1001", "4/5"),
    ("webm", "30"): ("30", "4/5"),
    ("webm", "50"): ("50", "12/25"),
    ("webm", "60000/1001"): ("19001/317", "401/1000"),
    ("webm", "60"): ("60", "2/5"),
    ("webm", "120"): ("120", "1/5"),
}


def ffmpeg_frame_times(ext: str, rate: Fraction, n: int) -> list[Fraction]:
    if ext in ("mp4", "mov"):
        return [Fraction(i) / rate for i in range(n)]
    half = Fraction(1, 2)
    return [Fraction(math.floor(Fraction(1000 * i) / rate + half), 1000) for i in range(n)]


@pytest.mark.parametrize("ext,rate", list(FFMPEG_WRITES), ids=[" ".join(k) for k in FFMPEG_WRITES])
def test_header_rate_and_frame_times_are_the_ffmpeg_programs(tmp_path, ext, rate):
    # 12 frames at half the rate doubled, in segments of 7 frames: each joint of MP4 segments
    # used to move the times by its edit list's millisecond rounding (1200000/20011 for 59.94)
    out_rate = Fraction(rate)
    clip = Clip(".mkv", rate=out_rate / 2, n=12)
    src = make_clip(tmp_path / "in.mkv", clip)
    out = tmp_path / f"o.{ext}"
    interpolate_video(
        src,
        out,
        engine_factory=lambda need: blend_engine(),
        codec="libvpx-vp9" if ext == "webm" else None,
        segment_frames=7,
        segment_seconds=0,
    )
    avg, duration = (Fraction(v) for v in FFMPEG_WRITES[(ext, rate)])
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        times = [Fraction(f.pts) * s.time_base for f in c.decode(s)]
        stated = Fraction(s.duration) * s.time_base if s.duration else None
        assert Fraction(s.average_rate) == avg
        assert (stated or Fraction(c.duration, av.time_base)) == duration
    assert times == ffmpeg_frame_times(ext, out_rate, 24)


@pytest.mark.parametrize("given", [None, "libx264"], ids=["default", "--codec"])
def test_a_narrowed_format_notice_names_the_encoder_as_the_user_chose_it(given):
    """x264 has no 12-bit: the notice says --codec libx264 only where the user wrote it."""
    from rife_cli.video.sink import EncodeOptions, prepare_encoding

    notices: list[str] = []
    opts = prepare_encoding(
        Path("x.mp4"), EncodeOptions(given), 64, 48, Fraction(25), 12,
        source_pix_fmt="yuv422p12le", warn=notices.append, open_encoder=False,
    )  # fmt: skip
    assert opts.codec == "libx264" and opts.pix_fmt == "yuv422p10le"
    who = "--codec libx264" if given else "libx264 (the default encoder; see --codec)"
    said = (
        f"{who} cannot hold the source's 4:2:2 12-bit (yuv422p12le); writing yuv422p10le "
        "(4:2:2 10-bit), the nearest it holds"
    )
    assert notices == [said]


def _samples(path: Path) -> np.ndarray:
    """The first audio track's samples, channels by samples, as int32 (left-aligned, as FFmpeg
    decodes 24-bit)."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        channels = s.codec_context.layout.nb_channels
        got = []
        for f in c.decode(s):
            a = f.to_ndarray()
            got.append(a if f.format.is_planar else a.reshape(-1, channels).T)
        shift = 16 if s.codec_context.format.bytes == 2 else 0
    return np.concatenate(got, axis=1).astype(np.int32) << shift


@pytest.mark.parametrize("pcm", ["pcm_s24le", "pcm_s16le"])
def test_pcm_goes_into_mp4_as_lossless_flac(tmp_path, pcm):
    """PCM in MP4 (ipcm) reads as 16-bit noise in the ffmpeg program 5.1 and players built on
    it: it goes in as FLAC, the same samples, at the source's depth, with a notice."""
    clip = Clip(".mkv", rate=Fraction(25), n=20, bframes=False, audio=[Track(pcm)])
    source, out, summary, timesteps, warnings = run(tmp_path, clip, "o.mp4")
    check_doubled(source, out, summary, timesteps, clip)
    check_tracks_in_sync(source, out)
    with av.open(summary.output) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "flac"
        assert a.codec_context.format.name == ("s32" if pcm == "pcm_s24le" else "s16")
    want, got = _samples(tmp_path / "in.mkv"), _samples(Path(summary.output))
    assert want.shape[0] == got.shape[0] == 2
    assert got.shape[1] >= want.shape[1] - 4608  # FLAC frames of 4608 samples, the last one cut
    n = min(want.shape[1], got.shape[1])
    assert np.array_equal(want[:, :n], got[:, :n]) and np.abs(want).max() > 1 << 24
    if pcm == "pcm_s24le":
        assert (want & 0xFF00).any()  # the low 8 of the 24 bits are used, and kept
    assert f"audio track 1 ({pcm}) written into .mp4 as FLAC (lossless)" in " ".join(warnings)


def test_audio_outlasting_the_picture_in_matroska_is_not_called_a_damaged_file(tmp_path):
    """Matroska states no video duration in the stream; the file's (3 s, the audio's) is not the
    picture's (1 s): the video's own statistics tag is, so no "pictures end early" warning."""
    src = tmp_path / "long-audio.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        for i in range(25):
            picture = np.full((48, 64, 3), 8 * i, np.uint8)
            c.mux(v.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        c.mux(v.encode(None))
        for k in range(3 * 48000 // 1024):
            f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), "fltp", "stereo")
            f.sample_rate, f.pts = 48000, k * 1024
            c.mux(a.encode(f))
        c.mux(a.encode(None))
    with av.open(str(src)) as c:
        assert c.duration / av.time_base > 2.9 and not c.streams.video[0].duration
    warnings: list[str] = []
    summary = interpolate_video(
        src, tmp_path / "o.mp4", engine_factory=lambda need: blend_engine(), warn=warnings.append
    )
    assert summary.frames_in == 25 and summary.frames_out == 50
    assert not [w for w in warnings if "could not be read" in w], warnings


def test_a_subtitle_cue_showing_when_the_video_starts_is_cut_to_that_start(tmp_path):
    """A cue from 0 to 3 s over video that starts at 1 s: it shows from the output's start to
    2 s. At its negative time, Matroska's muxer moved every track 1 s later."""
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:03,000\nlong cue\n")
    clip = Clip(".mkv", rate=Fraction(25), n=25, start=Fraction(1), subtitles=srt)
    src = make_clip(tmp_path / "in.mkv", clip)
    summary = interpolate_video(
        src, tmp_path / "o.mkv", engine_factory=lambda need: blend_engine(), warn=lambda m: None
    )
    with av.open(summary.output) as c:
        v, s = c.streams.video[0], c.streams.subtitles[0]
        first = next(p for p in c.demux(v) if p.size)
        assert abs(first.pts * v.time_base) < Fraction(1, 20)
    with av.open(summary.output) as c:
        s = c.streams.subtitles[0]
        cue = next(p for p in c.demux(s) if p.size)
        start, end = cue.pts * s.time_base, (cue.pts + cue.duration) * s.time_base
    assert abs(start) < Fraction(1, 20) and abs(end - 2) < Fraction(1, 20), (start, end)


@pytest.mark.parametrize(
    "source,codec,want",
    [
        ("yuvj422p", "libx264", "yuv422p"),  # MJPEG from webcams: range is a flag, chroma kept
        ("yuvj444p", "libx264", "yuv444p"),
        ("yuva444p", "ffv1", "yuv444p"),  # the alpha dropped (said apart), not the chroma
        ("yuva444p12le", "libx264", "yuv444p10le"),  # ProRes 4444 decodes so
    ],
)
def test_full_range_and_alpha_sources_keep_their_chroma_format(source, codec, want):
    from rife_cli.video.sink import default_pix_fmt

    notices: list[str] = []
    assert default_pix_fmt(codec, 8, source, notices.append) == want
    assert bool(notices) == (source == "yuva444p12le")  # only the depth is narrowed, said


def test_mjpeg_full_range_422_comes_out_422_full_range(tmp_path):
    src = tmp_path / "m.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("mjpeg", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj422p"
        for i in range(6):
            rgb = np.full((48, 64, 3), 30 * i, np.uint8)
            c.mux(
                v.encode(
                    av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj422p")
                )
            )
        c.mux(v.encode(None))
    summary = interpolate_video(
        src, tmp_path / "o.mp4", engine_factory=lambda need: blend_engine(), warn=lambda m: None
    )
    with av.open(summary.output) as c:
        cc = c.streams.video[0].codec_context
        assert cc.pix_fmt in ("yuv422p", "yuvj422p") and cc.color_range == 2


def test_a_transport_stream_cut_mid_group_is_not_taken_for_frames_missing(tmp_path):
    """A recording or download cut anywhere starts with pictures the decoder drops (no keyframe
    before them); one lost in the cut read as a frame missing, and a midpoint-only model (v3.6)
    refused the file."""
    from rife_cli.video.source import probe

    whole = tmp_path / "whole.ts"
    with av.open(str(whole), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"g": "25", "bf": "2"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(75):
            rgb = np.full((48, 64, 3), (3 * i) % 256, np.uint8)
            c.mux(v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(v.encode(None))
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    for skip in range(20, 40):  # 188-byte TS packets: cut inside the first group
        cut.write_bytes(data[188 * skip :])
        info = probe(cut)
        assert not info.vfr and info.grid is not None and info.rate == 25, skip


def joined_recording(src: Path, jump: Fraction, n: int = 20) -> Path:
    """Two recordings joined (cat a.ts b.ts): n pictures at 25 fps, the clock `jump` s on from
    the n/2-th."""
    return stamped_clip(src, [Fraction(i, 25) + (jump if i >= n // 2 else 0) for i in range(n)])


def stamped_clip(src: Path, times: list[Fraction]) -> Path:
    """An MPEG-TS clip with a picture at each of `times` (seconds, to the 90 kHz tick)."""
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"bf": "0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        # the encoder keeps the times to the tick (at its default 1/25 it rounds them to frames)
        v.time_base = v.codec_context.time_base = Fraction(1, 90000)
        for i, seconds in enumerate(times):
            rgb = np.full((48, 64, 3), 10 * i % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = int(seconds * 90000), Fraction(1, 90000)
            for p in v.encode(frame):
                c.mux(p)
        c.mux(v.encode(None))
    return src


@pytest.mark.parametrize("jump", [Fraction(4), Fraction(1000), Fraction(40173, 10000)])
def test_a_forward_jump_in_the_timestamps_is_held_not_morphed(tmp_path, jump):
    """Two recordings joined (cat a.ts b.ts) with the clock 4 s (or 1000 s) on: the gap is kept
    as time (the audio has it too) but held on the pictures either side with a notice, instead of
    a 4 s morph between unrelated pictures, or a 1000 s one that ran out of memory. A jump off
    the grid (4.0173 s) puts the pictures after it back on the grid: they pass through and pairs
    make midpoints, so a midpoint-only model serves the file (it failed at the jump with "cannot
    make t = 27/400", or was refused where the probe saw the jump)."""
    src = joined_recording(tmp_path / "joined.ts", jump)
    timesteps: list[Fraction] = []
    warnings: list[str] = []
    needs: list[bool] = []
    totals: list[int | None] = []
    summary = interpolate_video(
        src,
        tmp_path / "o.mkv",
        engine_factory=lambda need: needs.append(need) or recording_engine(timesteps),
        warn=warnings.append,
        total=totals.append,
        exp=1,
    )
    # the progress bar's total is the timeline's, the gap's held frames included (not 40); the
    # container's duration has the jump as stamped, less than half a frame off the moved one
    assert len(totals) == 1 and abs(totals[0] - summary.frames_out) <= 2
    said = [w for w in warnings if "timestamps jump" in w]
    assert len(said) == 1 and "at frame 10" in said[0] and "not interpolated" in said[0], warnings
    assert ("put on the 25 fps grid, 17 ms earlier" in said[0]) == (jump.denominator != 1)
    assert not any("leave the" in w for w in warnings)
    # the 18 pairs on either side made their midpoints; the pair across the jump made nothing
    assert len(timesteps) == 18 and set(timesteps) == {Fraction(1, 2)} and needs == [False]
    jump = Fraction(round(jump * 25), 25)  # as moved onto the grid
    span = Fraction(19, 25) + jump
    assert summary.frames_out == int(span * 50) + 2  # every output slot of the timeline
    if jump < 10:
        # the picture before the jump holds until the next one's own time (where its sound
        # starts), not half the gap each
        with av.open(summary.output) as c:
            v = c.streams.video[0]
            shown = [(f.pts * v.time_base, f.to_ndarray(format="gray").mean()) for f in c.decode(v)]
        back = shown[0][0]
        gap = [m for t, m in shown if Fraction(9, 25) <= t - back < Fraction(10, 25) + jump]
        after = [m for t, m in shown if t - back >= Fraction(10, 25) + jump]
        assert len(gap) == int(jump * 50) + 2 and all(abs(m - gap[0]) < 2 for m in gap), gap
        assert abs(after[0] - gap[0]) > 4


def test_each_jump_moves_its_own_recording_at_most_half_a_frame(tmp_path):
    """Three recordings joined, the second 19 ms after the grid, the third 2 ms before it: each
    is put on the grid nearest its own stamps. The third was moved from the second's move on,
    38 ms early in all (its sound 37 ms late), and its notice said 19 ms."""
    from rife_cli.video.source import probe, read_frames

    off = [Fraction(0), Fraction(2) + Fraction(19, 1000), Fraction(5) - Fraction(2, 1000)]
    times = [Fraction(i, 25) + off[i // 8] for i in range(24)]
    warnings: list[str] = []
    info = probe(stamped_clip(tmp_path / "joined.ts", times))
    got = [f.time for f in read_frames(info, warn=warnings.append)]
    for stamp, placed in zip(times, got):
        assert abs(placed - stamp) <= Fraction(1, 50) and (placed * 25).denominator == 1
    moved = [w.split("put on the 25 fps grid, ")[1].split(" than")[0] for w in warnings]
    assert moved == ["19 ms earlier", "2 ms later"], warnings


def test_timestamps_out_of_order_are_said_three_times_then_counted(tmp_path):
    """A clock one frame behind from picture 10 on: each later picture is out of order and
    placed after the last; said for the first three and counted once at the end (it was a line
    per picture)."""
    from rife_cli.video.source import probe, read_frames

    first = stamped_clip(tmp_path / "a.ts", [Fraction(i, 25) for i in range(10)])
    second = stamped_clip(tmp_path / "b.ts", [Fraction(i, 25) for i in range(9, 29)])
    joined = tmp_path / "behind.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    warnings: list[str] = []
    info = probe(joined)
    got = [f.time for f in read_frames(info, warn=warnings.append)]
    assert got == [Fraction(i, 25) for i in range(30)]
    said = [w for w in warnings if "out of order" in w]
    assert len(said) == 4 and said[-1].endswith("20 frames in all had timestamps out of order")


def test_frames_missing_from_the_timeline_are_said(tmp_path):
    """Dropped frames (a gap under a second on a constant-rate clip) are made by interpolation,
    as before, and now said: three gaps by place, the rest counted."""
    from rife_cli.video.source import probe, read_frames

    kept = [i for i in range(60) if i not in (3, 4, 20, 30, 40, 41, 42, 50)]
    warnings: list[str] = []
    info = probe(stamped_clip(tmp_path / "dropped.ts", [Fraction(i, 25) for i in kept]))
    list(read_frames(info, warn=warnings.append))
    said = [w.split(": ", 1)[1] for w in warnings if "missing" in w]
    assert said == [
        "2 frames missing from the 25 fps timeline before frame 3 (0.20 s): made by interpolation",
        "1 frame missing from the 25 fps timeline before frame 18 (0.84 s): made by interpolation",
        "1 frame missing from the 25 fps timeline before frame 27 (1.24 s): made by interpolation",
        "8 frames in all missing from the timeline, in 5 gaps",
    ]


def test_a_shard_of_a_joined_recording_numbers_its_pictures_as_the_whole_read_does(tmp_path):
    """The pictures after a jump sit on the grid far from their order: a shard (--devices) reads
    from the start, as for a variable rate, instead of numbering them by their grid places."""
    from rife_cli.video.source import probe, read_frames

    info = probe(joined_recording(tmp_path / "joined.ts", Fraction(40173, 10000)))
    assert info.jumps and not info.vfr
    whole = {f.time: f.index for f in read_frames(info)}
    shard = {f.time: f.index for f in read_frames(info, start_at=Fraction(45, 10))}
    assert shard and all(whole[t] == i for t, i in shard.items())


def test_mov_keeps_a_language_by_its_twin_code_or_says_it_cannot(tmp_path):
    """FFmpeg's MOV writer keeps only the Macintosh table's codes: French as "fra", not "fre"
    (which vanished unsaid); Swedish not at all, which is now said."""
    clip = Clip(
        ".mkv", n=10, audio=[Track(language="fre"), Track(language="swe"), Track(language="jpn")]
    )
    _, out, _, _, warnings = run(tmp_path, clip, "o.mov")
    assert [t[3] for t in out.tracks] == ["fra", None, "jpn"]
    said = (
        "track 2's language (swe) not kept: .mov stores only the Macintosh language codes; "
        ".mkv or .mp4 keep it"
    )
    assert [w for w in warnings if "language" in w] == [said]


def test_a_long_regular_stream_with_b_frames_is_not_taken_for_frames_missing(tmp_path):
    """The probe reads the first 720 packets, in decoding order: the B-frames still to come
    left holes at the end of what it saw, so every x264 file over 29 s read as frames missing
    (v3.6 refused it, the default switched to v4.0)."""
    from rife_cli.video.source import SCAN_PACKETS, probe

    src = make_clip(tmp_path / "long.mp4", Clip(".mp4", n=SCAN_PACKETS + 80))  # B-frames
    with av.open(str(src)) as c:
        stamps = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert any(b < a for a, b in itertools.pairwise(stamps))  # reordered: B-frames are there
    info = probe(src)
    assert not info.vfr and info.grid is not None and info.rate == 25


def test_recordings_joined_with_cat_go_on_where_the_clock_starts_again(tmp_path):
    """cat a.ts b.ts: the second file's clock starts again. Every picture after it was "out of
    order" (a line each), and its audio, stepping back too, failed the mux: all audio dropped
    ("video only"). Now pictures and audio go on from the join, said once."""
    parts = []
    for k in range(2):
        part = tmp_path / f"{k}.ts"
        make_clip(part, Clip(".ts", rate=Fraction(25), n=25, audio=[Track()]))
        parts.append(part.read_bytes())
    src = tmp_path / "joined.ts"
    src.write_bytes(b"".join(parts))
    timesteps: list[Fraction] = []
    warnings: list[str] = []
    summary = interpolate_video(
        src, tmp_path / "o.mkv", engine_factory=lambda need: recording_engine(timesteps),
        warn=warnings.append,
    )  # fmt: skip
    said = [w for w in warnings if "timestamps start again" in w]
    assert len(said) == 1 and "at frame 25" in said[0], warnings
    assert not [w for w in warnings if "out of order" in w or "video only" in w], warnings
    assert summary.frames_in == 50 and summary.frames_out == 100
    out = read_media(Path(summary.output))
    assert out.tracks and out.tracks[0][0] == "audio"
    with av.open(summary.output) as c:
        a = c.streams.audio[0]
        heard = sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate
    assert heard > 1.9  # both recordings' sound


@pytest.mark.parametrize(
    "sound_after,second_start,overlap",
    [
        (
            Fraction(0),
            Fraction(1),
            False,
        ),  # the clock starts again, sound and pictures end together
        (Fraction(3, 10), Fraction(1), True),  # the first recording's sound runs on 0.3 s
        (Fraction(0), Fraction(5) - Fraction(3, 25), False),  # 0.12 s back from its end
    ],
)
def test_sound_stays_with_its_pictures_where_the_clock_starts_again(
    tmp_path, sound_after, second_start, overlap
):
    """Two recordings joined (cat a.ts b.ts), the second's clock back where it started (or
    0.12 s back): its pictures go on from the first's last one, and its sound moves with them.
    Each track went on from its own last packet, so the sound came late by the first
    recording's sound past its last picture plus the second's sound before its first (37 ms made
    by the ffmpeg program, 515 ms with 0.5 s past); 0.12 s back lost the sound entirely."""
    joined = tmp_path / "joined.ts"
    first = ts_recording(tmp_path / "a.ts", Fraction(1), 4 * 25, sound_after, mark=50)
    second = ts_recording(tmp_path / "b.ts", second_start, 4 * 25, Fraction(0), mark=30)
    joined.write_bytes(first + second)
    warnings: list[str] = []
    summary = interpolate_video(
        joined,
        tmp_path / "o.mkv",
        engine_factory=lambda need: blend_engine(),
        warn=warnings.append,
        codec="ffv1",
    )
    assert any("timestamps start again at frame 100" in w for w in warnings), warnings
    assert any("left out where joined recordings overlap" in w for w in warnings) == overlap
    with av.open(summary.output) as c:
        flashes = [f.time for f in c.decode(video=0) if f.to_ndarray(format="gray").mean() > 200]
    with av.open(summary.output) as c:
        clicks = []
        for f in c.decode(audio=0):
            loud = np.flatnonzero(np.abs(f.to_ndarray()[0]) > 0.3)
            if len(loud) and (not clicks or f.time + loud[0] / 48000 - clicks[-1] > 0.5):
                clicks.append(f.time + loud[0] / 48000)
    # each click as far from its white picture (the first of the two output frames a
    # passed-through picture holds at 2x) in the second recording as in the first (MP2's own
    # delay sets it 11 ms early in both)
    shown = [t for i, t in enumerate(flashes) if i == 0 or t - flashes[i - 1] > 0.5]
    assert len(shown) == len(clicks) == 2, (flashes, clicks)
    assert abs((clicks[1] - shown[1]) - (clicks[0] - shown[0])) < 0.003, (shown, clicks)


def test_an_avi_with_b_frames_keeps_its_pictures_in_order(tmp_path, monkeypatch):
    """AVI stores no presentation times: with B-frames the decoder hands the pictures out in
    order but stamped from their places in the file (1, 4, 3, 5, 2, ...; a file made by the
    ffmpeg program). They were taken as out of order, placed one after another, and drifted (a
    picture shown twice, a line per picture); with a restart at two frames back the default
    model then failed. The output passes every picture through, in order."""
    from rife_cli.video import source

    clip = Path(__file__).parent / "data" / "made_by_ffmpeg" / "x264_bframes.avi"
    info = source.probe(clip)
    warnings: list[str] = []
    got = [f.time for f in source.read_frames(info, warn=warnings.append)]
    assert got == [info.start + Fraction(i, 25) for i in range(40)] and not warnings, warnings
    summary = interpolate_video(
        clip, tmp_path / "o.mkv", engine_factory=lambda need: blend_engine(), codec="ffv1"
    )
    with av.open(str(clip)) as c:
        pictures = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    with av.open(summary.output) as c:
        made = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(made) == 80 and all(np.array_equal(made[2 * i], p) for i, p in enumerate(pictures))
    monkeypatch.setattr(source, "_stamps_in_order", lambda frames: frames)
    list(source.read_frames(info, warn=warnings.append))
    assert warnings  # the stamps as FFmpeg gives them are out of order
