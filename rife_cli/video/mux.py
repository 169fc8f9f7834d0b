"""The final file: the encoded video plus the source's audio, subtitles and chapters, by stream copy."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from .sink import supported_codecs

# Re-encoding target per container when the source's audio codec cannot be copied into it.
AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "webm": "libopus", "matroska": "aac"}


@dataclass
class MuxReport:
    audio: list[str] = field(default_factory=list)  # codec names, "a->b" when re-encoded
    subtitles: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass
class Route:
    out: av.stream.Stream
    resampler: av.AudioResampler | None = None  # set when the stream is re-encoded


def _packets(container, streams, gid: int):
    """(time, input id, order, packet) for the given streams, in file order."""
    for n, packet in enumerate(container.demux(streams)):
        if packet.size == 0:
            continue
        t = packet.dts if packet.dts is not None else packet.pts
        time = Fraction(t) * packet.time_base if t is not None and packet.time_base else Fraction(0)
        yield time, gid, n, packet


def _segment_packets(paths: list[Path], ostream, gid: int):
    """Video packets of the segments in order, as (time, input id, order, packet) for `ostream`.

    Each segment was encoded on its own, so a decoding timestamp may step back at a joint by
    the encoder's reorder delay; it is nudged forward (never past its pts) to stay monotonic."""
    last_dts = None
    n = 0
    for path in paths:
        with av.open(str(path), metadata_errors="replace") as c:
            s = c.streams.video[0]
            for packet in c.demux(s):
                if packet.size == 0:
                    continue
                tb = Fraction(packet.time_base)
                if packet.dts is not None:
                    if last_dts is not None and packet.dts * tb <= last_dts:
                        packet.dts = min(packet.pts, math.floor(last_dts / tb) + 1)
                    last_dts = time = packet.dts * tb
                elif last_dts is not None:
                    time = last_dts  # Matroska leaves the first dts unset
                else:
                    time = Fraction(packet.pts or 0) * tb
                n += 1
                yield time, gid, n, packet


def mux(
    video_paths: list[Path], source: Path | None, out: Path, fmt: str, warn: Callable[[str], None]
) -> MuxReport:
    """Write `out` (format `fmt`) from the encoded video segments and, if `source` is given, its
    audio, subtitles and chapters. Trouble with those never fails the video: it is written alone."""
    if source is not None:
        try:
            return _mux(video_paths, source, out, fmt, warn)
        except (av.FFmpegError, AttributeError, ValueError, TypeError, UnicodeDecodeError) as exc:
            warn(
                f"audio/subtitles could not be carried over ({type(exc).__name__}: {exc}); video only"
            )
    return _mux(video_paths, None, out, fmt, warn)


def _mux(video_paths, source, out, fmt, warn) -> MuxReport:
    report = MuxReport()
    with (
        av.open(str(video_paths[0]), metadata_errors="replace") as first,
        av.open(str(out), "w", format=fmt) as dst,
    ):
        # opaque: take the codec as it was read, so no encoder is looked up (this FFmpeg has an
        # AV1 encoder but no AV1 decoder under the encoder's name: the lookup would fail)
        vout = dst.add_stream_from_template(first.streams.video[0], opaque=True)
        feeds = [_segment_packets(video_paths, vout, 0)]
        routes = {}
        src = _open_quietly(source, warn) if source is not None else None
        try:
            if src is not None:
                routes = _map_streams(src, dst, fmt, report, warn)
                if routes:
                    feeds.append(_packets(src, list(routes), 1))
                _copy_chapters(src, dst, warn)
            for _, gid, _, packet in heapq.merge(*feeds, key=lambda x: x[:3]):
                route = Route(vout) if gid == 0 else routes[packet.stream]
                if route.resampler is None:
                    packet.stream = route.out
                    dst.mux(packet)
                else:
                    _transcode(packet, route, dst, warn)
            for route in routes.values():
                if route.resampler is not None:
                    dst.mux(route.out.encode(None))
        finally:
            if src is not None:
                src.close()
    return report


def _open_quietly(path: Path, warn):
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as exc:
        warn(f"audio not carried over: {exc}")
        return None


def _copy_chapters(src, dst, warn) -> None:
    try:
        chapters = src.chapters()
        if chapters:
            dst.set_chapters(chapters)
    except (av.FFmpegError, AttributeError, TypeError, ValueError) as exc:
        warn(f"chapters not carried over: {exc}")


def _map_streams(src, dst, fmt, report: MuxReport, warn) -> dict:
    ok = supported_codecs(fmt)
    routes = {}
    for s in itertools.chain(src.streams.audio, src.streams.subtitles):
        if s.codec_context is None:
            warn(f"stream {s.index} has no codec this FFmpeg knows; dropped")
            continue
        name = s.codec_context.name
        if name in ok:
            try:
                routes[s] = Route(dst.add_stream_from_template(s))
                (report.audio if s.type == "audio" else report.subtitles).append(name)
                continue
            except (av.FFmpegError, ValueError) as exc:
                warn(f"stream {s.index} ({name}) not copied: {exc}")
        if s.type != "audio":
            warn(f"subtitle stream {s.index} ({name}) cannot go into .{fmt}; dropped")
            report.dropped.append(name)
            continue
        codec = AUDIO_FALLBACK.get(fmt, "aac")
        try:
            rate = s.codec_context.sample_rate or 48000
            if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                rate = 48000
            o = dst.add_stream(codec, rate=rate)
            layout = s.codec_context.layout.name if s.codec_context.layout else "stereo"
            o.layout = layout
            sample_fmt = o.codec_context.codec.audio_formats[0].name
            o.format = sample_fmt
            routes[s] = Route(o, av.AudioResampler(format=sample_fmt, layout=layout, rate=rate))
            report.audio.append(f"{name}->{codec}")
            warn(f"audio stream {s.index} ({name}) cannot go into .{fmt}; re-encoded as {codec}")
        except (av.FFmpegError, ValueError) as exc:
            warn(f"audio stream {s.index} ({name}) dropped: {exc}")
            report.dropped.append(name)
    return routes


def _transcode(packet, route: Route, dst, warn) -> None:
    try:
        for frame in packet.decode():
            for f in route.resampler.resample(frame):
                f.pts = None
                dst.mux(route.out.encode(f))
    except av.FFmpegError as exc:
        warn(f"audio packet skipped: {exc}")
