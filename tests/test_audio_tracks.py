"""Audio the output container cannot take as it is (found by trying files the ffmpeg program
made): each such track re-encoded on its own (lossless stays lossless where the container has a
lossless codec), the others kept, channel layouts an encoder refuses mapped, channel orders of
their own put right without crashing PyAV, gaps kept, and MPEG-TS given only streams it plays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from clips import blend_engine

from rife_cli.pipeline import interpolate_video

DATA = Path(__file__).parent / "data"

RATE = 48000


def make(path: Path, tracks: list[dict], frames: int = 10, fmt: str | None = None) -> Path:
    """A 64x48 x264 clip at 25 fps with audio `tracks` (codec, layout, samples: a function
    of the track's (channels, n) int or float array, gap: (start, end) seconds left out)."""
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream("libx264", rate=25, options={"bf": "0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        outs = []
        for t in tracks:
            a = c.add_stream(t["codec"], rate=RATE)
            a.layout = t.get("layout", "stereo")
            if "format" in t:
                a.format = t["format"]
            outs.append(a)
        for i in range(frames):
            picture = np.full((48, 64, 3), 20 * i, np.uint8)
            c.mux(v.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        c.mux(v.encode(None))
        for t, a in zip(tracks, outs):
            total = frames * RATE // 25
            data = t["samples"](av.AudioLayout(a.layout.name).nb_channels, total)
            gap = t.get("gap")
            step = 1024
            for k in range(0, total, step):
                if gap and gap[0] * RATE <= k < gap[1] * RATE:
                    continue
                chunk = data[:, k : k + step]
                fmt_name = a.format.name
                if not a.format.is_planar:
                    chunk = chunk.T.reshape(1, -1)
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), fmt_name, a.layout.name)
                f.sample_rate, f.pts = RATE, k
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def tone(channels: int, n: int, dtype=np.int16) -> np.ndarray:
    t = np.arange(n) / RATE
    wave = np.stack([np.sin(2 * np.pi * 220 * (k + 1) * t) for k in range(channels)])
    if dtype == np.float32:
        return (0.5 * wave).astype(np.float32)
    return (0.5 * wave * np.iinfo(dtype).max).astype(dtype)


def run(src: Path, out: Path) -> tuple[list[str], object]:
    warnings: list[str] = []
    summary = interpolate_video(
        src, out, engine_factory=lambda need: blend_engine(), warn=warnings.append
    )
    return warnings, summary


def audio_of(path: Path) -> list[tuple[str, str, int]]:
    with av.open(str(path)) as c:
        return [
            (s.codec_context.name, s.codec_context.layout.name, s.index) for s in c.streams.audio
        ]


def samples(path: Path, index: int = 0) -> np.ndarray:
    """Audio track `index`'s decoded samples, channels by samples."""
    with av.open(str(path)) as c:
        s = c.streams.audio[index]
        channels = s.codec_context.layout.nb_channels
        got = []
        for f in c.decode(s):
            a = f.to_ndarray()
            got.append(a if f.format.is_planar else a.reshape(-1, channels).T)
    return np.concatenate(got, axis=1)


def test_one_track_the_container_refuses_is_reencoded_and_the_others_kept(tmp_path):
    # MOV lists Opus among its codecs, then refuses it when the file is written: that used to
    # drop every track ("video only"); now the Opus track alone becomes AAC.
    src = make(
        tmp_path / "two.mkv",
        [
            {"codec": "aac", "samples": lambda ch, n: tone(ch, n, np.float32), "format": "fltp"},
            {"codec": "libopus", "samples": lambda ch, n: tone(ch, n, np.float32), "format": "flt"},
        ],
    )
    warnings, _ = run(src, tmp_path / "o.mov")
    assert [a[0] for a in audio_of(tmp_path / "o.mov")] == ["aac", "aac"]
    assert "audio track 2 (opus) cannot go into .mov; re-encoded as aac" in warnings
    assert not [w for w in warnings if "video only" in w or "dropped" in w], warnings


def test_flac_into_mov_stays_lossless_as_pcm(tmp_path):
    src = make(tmp_path / "f.mkv", [{"codec": "flac", "samples": tone, "format": "s16"}])
    warnings, _ = run(src, tmp_path / "o.mov")
    assert audio_of(tmp_path / "o.mov")[0][0] == "pcm_s16le"
    assert "audio track 1 (flac) cannot go into .mov; re-encoded as PCM (lossless)" in warnings
    want, got = samples(src), samples(tmp_path / "o.mov")
    n = min(want.shape[1], got.shape[1])
    assert n >= want.shape[1] - 4608 and np.array_equal(want[:, :n], got[:, :n])


def test_a_layout_the_encoder_refuses_is_mapped_not_dropped(tmp_path):
    # AC-3/E-AC-3/DTS 5.1 decode as 5.1(side), which libopus refuses: it used to print a line
    # per packet and drop the audio; now it goes into WebM as Opus 5.1.
    src = make(
        tmp_path / "s.mkv",
        [{"codec": "pcm_s16le", "layout": "5.1(side)", "samples": tone}],
    )
    warnings, _ = run(src, tmp_path / "o.webm")
    assert audio_of(tmp_path / "o.webm")[0][:2] == ("opus", "5.1")
    assert not [w for w in warnings if "skipped" in w or "dropped" in w], warnings
    got = samples(tmp_path / "o.webm")
    assert got.shape[0] == 6 and np.abs(got).max(axis=1).min() > 0.1  # every channel carried


def _chan_atom_custom(path: Path) -> None:
    """Patch a 7.1 MOV's channel layout atom to the tag the ffmpeg program 5.1 writes for 7.1
    (kAudioChannelLayoutTag_MPEG_7_1_C), which FFmpeg 8.1 reads as its own channel order,
    FL+FR+FC+LFE+SL+SR+BL+BR: the custom-order layout PyAV 18.1 frees twice when decoded."""
    data = bytearray(path.read_bytes())
    at = data.find(b"chan")
    assert at > 0
    data[at + 8 : at + 16] = bytes.fromhex("0080000800000000")  # tag, bitmap
    path.write_bytes(bytes(data))


def test_pcm_in_a_channel_order_of_its_own_is_reordered_without_crashing(tmp_path):
    levels = np.array([1000 * (k + 1) for k in range(8)], np.int16)

    def constant(ch: int, n: int) -> np.ndarray:
        return np.repeat(levels[:, None], n, axis=1)

    src = make(tmp_path / "c.mov", [{"codec": "pcm_s16le", "layout": "7.1", "samples": constant}])
    _chan_atom_custom(src)
    probe = "import av, sys; print(av.open(sys.argv[1]).streams.audio[0].codec_context.layout.name)"
    read = subprocess.run(
        [sys.executable, "-c", probe, str(src)], capture_output=True, text=True, check=False
    )
    assert read.stdout.strip() == "8 channels (FL+FR+FC+LFE+SL+SR+BL+BR)", read
    # In a child process: the bug this guards against aborts the interpreter.
    script = (
        "import sys; sys.path.insert(0, sys.argv[3]); from clips import blend_engine\n"
        "from pathlib import Path; from rife_cli.pipeline import interpolate_video\n"
        "interpolate_video(Path(sys.argv[1]), Path(sys.argv[2]),"
        " engine_factory=lambda need: blend_engine(), warn=print)\n"
    )
    out = tmp_path / "o.mp4"
    done = subprocess.run(
        [sys.executable, "-c", script, str(src), str(out), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "written into .mp4 as FLAC (lossless)" in done.stdout
    assert audio_of(out)[0][:2] == ("flac", "7.1")
    got = samples(out)
    stored = ["FL", "FR", "FC", "LFE", "SL", "SR", "BL", "BR"]  # the source's order, as read
    native = ["FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"]  # 7.1's
    for k, name in enumerate(stored):
        assert np.all(got[native.index(name)] == levels[k]), name


def test_a_gap_in_reencoded_audio_is_kept_as_silence(tmp_path):
    # 0.1 s left out of the source's audio from 0.1 s on: what follows must not play early.
    def pulse(ch: int, n: int) -> np.ndarray:
        data = np.zeros((ch, n), np.int16)
        at = int(0.3 * RATE)
        data[:, at : at + 96] = 20000
        return data

    src = make(tmp_path / "g.mkv", [{"codec": "pcm_s16le", "samples": pulse, "gap": (0.1, 0.2)}])
    for ext in (".mp4", ".webm"):
        out = tmp_path / f"o{ext}"
        run(src, out)
        got = samples(out).astype(np.float32)
        with av.open(str(out)) as c:
            a = c.streams.audio[0]
            start = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
        at = np.argmax(np.abs(got[0])) / RATE + start
        assert abs(at - 0.3) < 0.01, (ext, at)


def test_mpegts_gets_only_streams_it_plays(tmp_path):
    # MPEG-TS writes any codec, but PCM and text subtitles become unplayable data streams
    src = make(tmp_path / "p.mkv", [{"codec": "pcm_s16le", "samples": tone}])
    warnings, _ = run(src, tmp_path / "o.mpegts")
    with av.open(str(tmp_path / "o.mpegts")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.audio[0].codec_context.name == "aac"
        assert not c.streams.data
    assert "audio track 1 (pcm_s16le) cannot go into .mpegts; re-encoded as aac" in warnings


@pytest.mark.parametrize(
    "codec,fmt,said",
    [
        ("pcm_alaw", "s16", "lossless"),
        ("pcm_s24le", "s32", "lossless"),
        ("pcm_f32le", "flt", "converted to 24-bit"),
    ],
)
def test_pcm_into_mp4_says_what_its_depth_keeps(tmp_path, codec, fmt, said):
    def samples_for(ch, n):
        return tone(ch, n, np.float32 if fmt == "flt" else np.int16).astype(
            {"s16": np.int16, "s32": np.int32, "flt": np.float32}[fmt]
        )

    ext = ".mov" if codec == "pcm_alaw" else ".mkv"  # Matroska has no A-law
    src = make(tmp_path / f"p{ext}", [{"codec": codec, "samples": samples_for, "format": fmt}])
    warnings, _ = run(src, tmp_path / "o.mp4")
    assert f"audio track 1 ({codec}) written into .mp4 as FLAC ({said})" in " ".join(warnings)


def _cues(path: Path) -> list[tuple[float, float, bytes]]:
    """(start, end, packet bytes) of the first subtitle track's cues."""
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        return [
            (float(p.pts * s.time_base), float((p.pts + p.duration) * s.time_base), bytes(p))
            for p in c.demux(s)
            if p.size
        ]


def test_text_subtitles_are_converted_to_the_text_format_the_container_holds(tmp_path):
    from media import Clip, make_clip

    srt = tmp_path / "s.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:00,200\nFirst line\n\n2\n00:00:00,240 --> 00:00:00,360\nSecond\n"
    )
    src = make_clip(tmp_path / "in.mkv", Clip(".mkv", n=10, subtitles=srt))
    # srt into MP4 and WebM used to be dropped ("cannot hold them"); mov_text into Matroska too
    for ext, codec, source in (
        (".mp4", "mov_text", src),
        (".webm", "webvtt", src),
        (".mkv", "ass", tmp_path / "o.mp4"),
    ):
        out = tmp_path / f"o{ext}"
        warnings, _ = run(source, out)
        with av.open(str(out)) as c:
            read_as = c.streams.subtitles[0].codec_context.codec.canonical_name
            assert read_as == codec or {read_as, codec} == {"ssa", "ass"}  # Matroska's S_TEXT/ASS
        cues = [c for c in _cues(out) if c[2].strip(b"\0\n ")]  # MP4 fills gaps with empty cues
        assert [(round(a, 3), round(b, 3)) for a, b, _ in cues] == [(0, 0.2), (0.24, 0.36)]
        assert b"First line" in cues[0][2] and b"Second" in cues[1][2]
        assert any(f"converted to {codec} for {ext}" in w for w in warnings), warnings
        assert not [w for w in warnings if "dropped" in w], warnings


@pytest.mark.parametrize("ext", [".webm", ".mp4"])
def test_vorbis_keeps_its_first_packet_before_the_picture(tmp_path, ext):
    """libvorbis's first packet (2 ms) ends just before the first picture (3 ms): left out as
    before the picture, the decoder dropped the next packet's first 576 samples too, and the
    output's sound started 12 ms late. It is kept for the packet after it: every sample there."""
    src = DATA / "made_by_ffmpeg" / "vorbis_first_packet.webm"
    _, summary = run(src, tmp_path / f"o{ext}")

    def sound(path):
        with av.open(str(path)) as c:
            start = next(c.decode(video=0)).time
        with av.open(str(path)) as c:
            frames = list(c.decode(audio=0))
        return frames[0].time - start, np.concatenate([f.to_ndarray()[0] for f in frames])

    (lag_in, samples_in), (lag_out, samples_out) = sound(src), sound(summary.output)
    assert abs(lag_out - lag_in) < 1e-3 and len(samples_out) == len(samples_in)
    assert np.array_equal(samples_out, samples_in)
