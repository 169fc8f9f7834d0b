"""Test media as people have them, made with PyAV: other containers than MP4, rounded timestamps,
non-zero start times, B-frames, several tracks with languages and flags, rotation, anamorphic
pixels, HDR tags; and what a finished output says about itself, read back with PyAV."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from clips import moving_frame

FORMATS = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".mov": "mov", ".ts": "mpegts"}
FORMATS[".avi"] = "avi"


@dataclass
class Track:
    """An audio track of a test clip: a tone starting `offset` seconds after the video."""

    codec: str = "aac"
    rate: int = 48000
    offset: Fraction = Fraction(0)
    language: str | None = None
    title: str | None = None
    default: bool | None = None


@dataclass
class Clip:
    """What to make: a moving square over `n` frames at `rate`."""

    ext: str = ".mkv"
    codec: str = "libx264"
    rate: Fraction = Fraction(25)
    n: int = 16
    w: int = 64
    h: int = 48
    pix_fmt: str = "yuv420p"
    start: Fraction = Fraction(0)  # the first frame's time (seconds, before the muxer's own delay)
    bframes: bool = True
    audio: list[Track] = field(default_factory=list)
    rotation: int | None = None  # degrees counter-clockwise
    sar: Fraction | None = None
    hdr: bool = False  # BT.2020 / PQ tags and HDR10 mastering-display and light-level metadata
    subtitles: Path | None = None  # an .srt or .ass file to carry as a subtitle track
    attachment: tuple[str, str, bytes] | None = None  # (name, mimetype, data)
    title: str | None = None
    chapters: bool = False
    negative_ts: bool = False  # keep times before 0 as written (else the muxer moves them to 0)


# HDR10 as x265 writes it (SEI), in its own units: primaries in 1/50000, luminance in 1/10000 cd/m2.
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MAX_CLL = "1000,400"


def _video_options(clip: Clip) -> dict[str, str]:
    if clip.codec == "libx264":
        opts = {"crf": "10", "preset": "ultrafast"}
        if clip.bframes:
            opts.update(bf="2", x264opts="b-pyramid=none")
            opts["preset"] = "veryfast"
        return opts
    if clip.codec == "libx265":
        params = "log-level=error"
        if clip.hdr:
            params += f":hdr10=1:master-display={MASTER_DISPLAY}:max-cll={MAX_CLL}"
        return {"crf": "10", "preset": "ultrafast", "x265-params": params}
    if clip.codec == "libvpx-vp9":
        return {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    if clip.codec == "mpeg4":
        return {"qscale": "2", "bf": "2" if clip.bframes else "0"}
    return {}


def make_clip(path: Path, clip: Clip) -> Path:
    tick = 1 / (clip.rate * 100)  # a frame is 100 ticks: room for an off-grid start
    options = {"avoid_negative_ts": "disabled"} if clip.negative_ts else {}
    with av.open(str(path), "w", format=FORMATS[clip.ext], container_options=options) as c:
        if clip.title:
            c.metadata["title"] = clip.title
        v = c.add_stream(clip.codec, rate=clip.rate)
        v.width, v.height, v.pix_fmt = clip.w, clip.h, clip.pix_fmt
        v.time_base = v.codec_context.time_base = tick
        cc = v.codec_context
        cc.options = _video_options(clip)
        if clip.codec == "mpeg4" and clip.bframes:
            cc.max_b_frames = 2
        if clip.sar is not None:
            cc.sample_aspect_ratio = clip.sar
        if clip.hdr:
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 9, 9, 16, 1
        if clip.rotation is not None:
            v.set_display_rotation(clip.rotation)
        tracks = []
        for t in clip.audio:
            a = c.add_stream(t.codec, rate=t.rate)
            a.layout = "stereo"
            if t.language:
                a.metadata["language"] = t.language
            if t.title:
                a.metadata["title"] = t.title
            if t.default is not None:
                a.disposition = av.stream.Disposition.default if t.default else 0
            tracks.append((a, t))
        sub = None
        if clip.subtitles is not None:
            subsrc = av.open(str(clip.subtitles))
            sub = (subsrc, c.add_stream_from_template(subsrc.streams.subtitles[0]))
            sub[1].metadata["language"] = "eng"
            sub[1].disposition = av.stream.Disposition.forced
        if clip.attachment is not None:
            c.add_attachment(*clip.attachment)
        first = round(clip.start / tick)
        for i in range(clip.n):
            img = moving_frame(i, clip.w, clip.h)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if clip.hdr or clip.pix_fmt != "yuv420p":
                f = f.reformat(format=clip.pix_fmt, dst_colorspace=9 if clip.hdr else 1)
                if clip.hdr:
                    f.colorspace, f.color_primaries, f.color_trc = 9, 9, 16
            f.pts, f.time_base = first + 100 * i, tick
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for a, t in tracks:
            _tone(c, a, t, clip.start, Fraction(clip.n) / clip.rate)
        if sub is not None:
            for p in sub[0].demux(sub[0].streams.subtitles[0]):
                if p.size:
                    p.stream = sub[1]
                    c.mux(p)
            sub[0].close()
        if clip.chapters:
            ms = int(clip.n / clip.rate * 1000)
            c.set_chapters(
                [
                    {"id": 1, "start": 0, "end": ms // 2, "time_base": Fraction(1, 1000),
                     "metadata": {"title": "one"}},
                    {"id": 2, "start": ms // 2, "end": ms, "time_base": Fraction(1, 1000),
                     "metadata": {"title": "two"}},
                ]
            )  # fmt: skip
    return path


def _tone(c, a, track: Track, video_start: Fraction, seconds: Fraction) -> None:
    rate = track.rate
    fmt = a.codec_context.codec.audio_formats[0].name
    resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
    first = round((video_start + track.offset) * rate)
    total = int(seconds * rate)
    done = 0
    while done < total:
        k = min(1152, total - done)
        tone = (np.sin(2 * np.pi * 440 * (np.arange(k) + done) / rate) * 0.3).astype(np.float32)
        fr = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        fr.sample_rate = rate
        for out in resampler.resample(fr):
            out.pts, out.time_base = first + done, Fraction(1, rate)
            c.mux(a.encode(out))
        done += k
    c.mux(a.encode(None))


@dataclass
class Media:
    """What a file says about itself, as a player would read it."""

    rate: Fraction  # as the container states it (Matroska: estimated from the timestamps)
    times: list[Fraction]  # of every decoded frame
    frames: int
    video_start: Fraction
    duration: Fraction  # from the first frame's time to the end of the last one
    pix_fmt: str
    rotation: int
    sar: Fraction | None
    colour: tuple[int, int, int]  # matrix, primaries, transfer
    hdr_side_data: dict[str, bytes]  # HDR10 side data of the first picture, as FFmpeg holds it
    # (type, codec, start - video start, language, title, default, forced) per other track
    tracks: list[tuple]
    attachments: list[str]
    chapters: list[str]
    chapter_starts: list[Fraction]  # start - video start
    title: str | None


def read_media(path: Path) -> Media:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times, first = [], None
        for f in c.decode(s):
            first = first or f
            times.append(None if f.pts is None else Fraction(f.pts) * s.time_base)
        rate = Fraction(s.average_rate)
        # Matroska frames before 0 come without a time: one frame before the next
        for i in reversed(range(len(times) - 1)):
            if times[i] is None and times[i + 1] is not None:
                times[i] = times[i + 1] - 1 / rate
        video_start = times[0]
        hdr = {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"}
        side = {sd.type.name: bytes(sd) for sd in first.side_data if sd.type.name in hdr}
        tracks = []
        for t in list(c.streams.audio) + list(c.streams.subtitles):
            start = Fraction(t.start_time) * t.time_base if t.start_time is not None else None
            d = t.disposition
            tracks.append(
                (
                    t.type,
                    t.codec_context.name if t.codec_context else None,
                    None if start is None else start - video_start,
                    t.metadata.get("language"),
                    t.metadata.get("title"),
                    bool(d & av.stream.Disposition.default),
                    bool(d & av.stream.Disposition.forced),
                )
            )
        sar = s.sample_aspect_ratio
        return Media(
            rate=rate,
            times=times,
            frames=len(times),
            video_start=video_start,
            duration=times[-1] - times[0] + (times[-1] - times[0]) / (len(times) - 1),
            pix_fmt=s.codec_context.pix_fmt,
            rotation=round(first.rotation or 0),
            sar=Fraction(sar) if sar and Fraction(sar) != 1 else None,
            colour=(first.colorspace, first.color_primaries, first.color_trc),
            hdr_side_data=side,
            tracks=tracks,
            attachments=[a.name for a in c.streams.attachments],
            chapters=[ch["metadata"].get("title") for ch in c.chapters()],
            chapter_starts=[
                ch["start"] * Fraction(ch["time_base"]) - video_start for ch in c.chapters()
            ],
            title=c.metadata.get("title"),
        )


def pan_frame(i: int, w: int, h: int) -> np.ndarray:
    """RGB frame i of a textured scene panning right (3 px a frame) with a square moving faster:
    detail at every scale, as the fields of interlaced video need to be told apart."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x = xx + 3 * i
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 110 + 60 * np.sin(x / 5.0) * np.cos(yy / 9.0)
    img[..., 1] = 120 + 50 * np.sin(x / 13.0 + yy / 7.0)
    img[..., 2] = 100 + 40 * np.cos(x / 3.0)
    x0 = (4 + 5 * i) % max(1, w - w // 4)
    img[h // 4 : 3 * h // 4, x0 : x0 + w // 4] = (235, 210, 60)
    return img


def weave(first: np.ndarray, second: np.ndarray, order: str) -> np.ndarray:
    """One interlaced frame: the earlier field's rows from `first`, the later's from `second`
    (top field first: the even rows are earlier)."""
    out = first.copy()
    later = slice(1, None, 2) if order == "tff" else slice(0, None, 2)
    out[later] = second[later]
    return out


def make_interlaced(
    path: Path, order: str, n: int = 12, w: int = 96, h: int = 64, rate: int = 25,
    flag: bool = True,
    codec: str = "libx264",
) -> list[np.ndarray]:  # fmt: skip
    """An interlaced H.264 clip of n frames at `rate` whose fields are 2n frames of a moving
    progressive clip at twice the rate, field order `order` (tff/bff); with `flag`, the frames and
    the stream say so (x264's interlaced mode), else it is encoded as progressive pictures (x264:
    the stream states progressive; ffv1: it states nothing). Returns the progressive frames (RGB),
    the truth for each field."""
    fields = [pan_frame(i, w, h) for i in range(2 * n)]
    with av.open(str(path), "w", format=FORMATS[path.suffix]) as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        cc = v.codec_context
        if codec == "libx264":
            cc.options = {"crf": "8", "preset": "ultrafast"}
        graph = None
        if flag:
            cc.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
            cc.field_order = 2 if order == "tff" else 3  # FFmpeg's AV_FIELD_TT / AV_FIELD_BB
            # x264 takes the field order from each frame's flag, which setfield sets
            graph = av.filter.Graph()
            src = graph.add_buffer(width=w, height=h, format="yuv420p", time_base=Fraction(1, rate))
            setfield = graph.add("setfield", order)
            sink = graph.add("buffersink")
            src.link_to(setfield)
            setfield.link_to(sink)
            graph.configure()
        for k in range(n):
            img = weave(fields[2 * k], fields[2 * k + 1], order)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = k, Fraction(1, rate)
            if graph is not None:
                graph.push(f)
                f = graph.pull()
            c.mux(v.encode(f))
        c.mux(v.encode(None))
    return fields


def make_size_change(path: Path, parts: list[tuple[int, int, int]], rate: int = 25) -> Path:
    """An H.264 stream (MPEG-TS) whose picture size changes: (width, height, frames) per part,
    each encoded on its own and muxed into the one stream, as joined recordings are."""
    with av.open(str(path), "w", format=FORMATS[path.suffix]) as c:
        w0, h0, _ = parts[0]
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w0, h0, "yuv420p"
        i = 0
        for w, h, n in parts:
            enc = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
            enc.time_base, enc.framerate = Fraction(1, rate), Fraction(rate)
            enc.options = {"crf": "10", "preset": "ultrafast"}
            packets = []
            for _ in range(n):
                f = av.VideoFrame.from_ndarray(moving_frame(i, w, h), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, rate)
                packets += enc.encode(f)
                i += 1
            packets += enc.encode(None)
            for p in packets:
                p.stream = v
                p.time_base = Fraction(1, rate)
                c.mux(p)
    return path


def add_cover(src: Path, out: Path, picture: bytes, codec: str = "mjpeg") -> Path:
    """`src` with an attached picture (cover art) after its streams, by stream copy, as yt-dlp
    embeds one (in Matroska: an image attachment, which FFmpeg reads back as the same)."""
    with av.open(str(src)) as s, av.open(str(out), "w", format=FORMATS[out.suffix]) as c:
        routes = {st: c.add_stream_from_template(st, opaque=True) for st in s.streams}
        if out.suffix == ".mkv":
            mime = "image/jpeg" if codec == "mjpeg" else "image/png"
            c.add_attachment(f"cover.{'jpg' if codec == 'mjpeg' else 'png'}", mime, picture)
        else:
            cover = c.add_stream(codec)
            cover.width, cover.height = 16, 16
            cover.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
            cover.disposition = av.stream.Disposition.attached_pic
            p = av.Packet(picture)
            p.stream = cover
            c.mux(p)
        for p in s.demux():
            if p.size:
                p.stream = routes[p.stream]
                c.mux(p)
    return out


def cover_picture(codec: str = "mjpeg") -> bytes:
    """A 16x16 picture encoded as a cover is (JPEG or PNG)."""
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height = 16, 16
    enc.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    enc.time_base = Fraction(1, 25)
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = (200, 30, 30)
    f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=enc.pix_fmt)
    return b"".join(bytes(p) for p in [*enc.encode(f), *enc.encode(None)])


def make_progressive(path: Path, frames: list[np.ndarray], rate: int = 50) -> Path:
    """RGB frames as a progressive H.264 clip encoded as make_interlaced encodes: the reference
    an interlaced clip's fields are held against (the same coding noise, no fields)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=FORMATS[path.suffix]) as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.codec_context.options = {"crf": "8", "preset": "ultrafast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
    return path


def ts_recording(path: Path, start: Fraction, n: int, sound_after: Fraction, mark: int) -> bytes:
    """An MPEG-TS recording: n pictures at 25 fps from `start` (its clock), dark but for a white
    one at picture `mark`, and MP2 sound (48 kHz, mono) from 21 ms before the first picture to
    `sound_after` s after the last one's end, silent but for a click at the white picture."""
    rate, tb = 48000, Fraction(1, 90000)
    with av.open(str(path), "w", format="mpegts") as c:
        v = c.add_stream("libx264", rate=25, options={"bf": "0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        a = c.add_stream("mp2", rate=rate)
        a.layout = "mono"
        for i in range(n):
            level = 255 if i == mark else 20
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), "rgb24")
            frame.pts, frame.time_base = round((start + Fraction(i, 25)) / tb), tb
            c.mux(v.encode(frame))
        c.mux(v.encode(None))
        first = start - Fraction(21, 1000)
        total = round((Fraction(n, 25) + Fraction(21, 1000) + sound_after) * rate)
        sound = np.zeros(total, np.int16)
        click = round((start + Fraction(mark, 25) - first) * rate)
        sound[click : click + 48] = 20000
        for k in range(0, total, 1152):
            chunk = sound[k : k + 1152]
            fr = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            fr.sample_rate, fr.time_base = rate, Fraction(1, rate)
            fr.pts = round(first * rate) + k
            c.mux(a.encode(fr))
        c.mux(a.encode(None))
    return path.read_bytes()
