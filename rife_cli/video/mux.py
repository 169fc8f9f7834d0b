"""The final file: the encoded video plus the source's audio, subtitles, attachments, chapters and
descriptive metadata, by stream copy, on the source's timeline.

The output starts at the source's first video frame: every other track is moved by the same
amount (`video_start`), so it keeps its offset to the video exactly as in the source.
"""

from __future__ import annotations

import functools
import heapq
import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError
from ..pipeline.resume import crash_point
from .audio import Reencode, open_reencoder, transcode
from .filters import main_video
from .sink import supported_codecs
from .subtitles import convert, open_converter

# Audio before the first picture is left out (the output starts there); said from this much on,
# below which it is an encoder's priming or a muxer's rounding, not content.
LEAD_NOTICE = Fraction(1, 10)
# A track's clock stepping back more than this, where the pictures' clock did not, has started
# again on its own: it goes on from its last packet's end (seconds). Less is an overlap: the
# packets behind are left out (a muxer takes no time going back).
RESTART = Fraction(1, 5)
# Audio codecs whose decoder makes nothing of a stream's first packet but the overlap the next
# one needs: the last packet before the video's start is kept for it (Vorbis: without its 2 ms
# first packet, the next one's first 576 samples went too, the audio 12 ms late).
PRE_ROLL = {"vorbis"}
# Muxers that move every packet from the first negative presentation time on, not the chapters.
MOVES_NEGATIVE_PTS = {"matroska", "webm"}
# FFmpeg's MPEG-TS muxer takes any codec but makes a real stream only of these (its stream
# types); anything else becomes an unplayable data stream. By codec (canonical) name.
MPEGTS_TRACKS = {
    "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m",
    "dvb_subtitle", "dvb_teletext",
}  # fmt: skip
# Containers that hold attachments (fonts that ASS subtitles need).
HOLDS_ATTACHMENTS = {"matroska"}
# Where a cover picture goes: an attached-picture stream (MP4's covr atom), or a Matroska
# attachment (which FFmpeg reads back as an attached picture; its muxer would otherwise write the
# picture as a one-frame video track). FFmpeg's MOV writer stores none: dropped with a warning.
COVER_AS_STREAM = {"mp4"}
COVER_MIME = {"mjpeg": ("image/jpeg", ".jpg"), "png": ("image/png", ".png")}
# Tags that describe the old file's encoding or size, not its content: never carried over.
STALE_TAGS = {
    "encoder",
    "major_brand",
    "minor_version",
    "compatible_brands",
    "duration",
    "vendor_id",
    "handler_name",
    "creation_time",
    "alpha_mode",  # Matroska's AlphaMode: the output is opaque (see SourceInfo.alpha)
}
STALE_PREFIXES = ("_statistics", "number_of_", "bps")


@dataclass
class MuxReport:
    audio: list[str] = field(default_factory=list)  # codec names, "a->b" when re-encoded
    subtitles: list[str] = field(default_factory=list)
    attachments: int = 0
    covers: int = 0  # attached pictures (cover art) kept
    dropped: list[str] = field(default_factory=list)  # what the container could not hold
    # seconds of audio before the source's first picture, left out (the output starts at that
    # picture); the longest of the tracks
    lead_cut: Fraction = Fraction(0)
    # seconds left out where a join's next recording overlapped the one before (its sound moved
    # with its pictures), by source track ("audio track 1")
    overlap_cut: dict = field(default_factory=dict)


@dataclass
class Route:
    out: av.stream.Stream
    offset: int  # the video's start, in ticks of the input stream's time base
    reencode: Reencode | None = None  # set when the stream is re-encoded
    text: bool = False  # a text subtitle track converted to the container's text format


def kept_tags(metadata: dict) -> dict:
    """A stream's or file's descriptive tags (language, title, ...), without the encoding ones."""
    return {
        k: v
        for k, v in metadata.items()
        if k.lower() not in STALE_TAGS and not k.lower().startswith(STALE_PREFIXES)
    }


def _shifted_packets(container, routes: dict, gid: int, report: MuxReport, restarts=()):
    """(time, input id, order, packet) for the routed streams in file order, moved so that the
    video's first frame is at 0; packets that end before that are left out (how far before, in
    `report.lead_cut`). `restarts`: the reader's moves of the pictures where their clock
    started again (see _Clock)."""
    clocks: dict = {}  # stream -> _Clock
    pre_roll: dict = {}  # stream -> its last packet before the video's start (PRE_ROLL codecs)
    started: set = set()  # the streams that have given a packet from the video's start on
    for n, packet in enumerate(container.demux(list(routes))):
        if packet.size == 0:
            continue
        clock = clocks.setdefault(packet.stream, _Clock(restarts))
        if not clock.place(packet):
            report.overlap_cut[f"{packet.stream.type} track {packet.stream.index}"] = clock.cut
            continue
        off = routes[packet.stream].offset
        if packet.pts is not None:
            packet.pts -= off
        if packet.dts is not None:
            packet.dts -= off
        tb = packet.time_base
        # One that ends at the video's start stays: it can be an encoder's priming packet (AAC's
        # first 1024 samples), without which the next would be trimmed instead.
        if packet.pts is not None and tb and packet.pts + (packet.duration or 0) < 0:
            if packet.stream.type == "audio":
                report.lead_cut = max(report.lead_cut, -packet.pts * Fraction(tb))
                if packet.stream.codec_context.name in PRE_ROLL and packet.stream not in started:
                    pre_roll[packet.stream] = (n, packet)
            continue
        started.add(packet.stream)
        if packet.stream in pre_roll:
            early, first = pre_roll.pop(packet.stream)
            yield Fraction(first.pts) * first.time_base, gid, early, first
        if packet.stream.type == "subtitle" and packet.pts is not None and packet.pts < 0:
            # A cue showing when the video starts: from its start on, as the chapters are (at a
            # negative time Matroska's muxer moved every track later by as much).
            packet.duration = max(0, (packet.duration or 0) + packet.pts)
            packet.pts = packet.dts = 0
        t = packet.dts if packet.dts is not None else packet.pts
        time = Fraction(t) * tb if t is not None and tb else Fraction(0)
        yield time, gid, n, packet


@dataclass
class _Clock:
    """One track's clock through joined recordings. Where it steps back (the next recording's
    clock starts again), its packets are moved by what the reader moved the pictures by at the
    same join (`restarts`: the cumulative moves, in order; video.source.read_frames), so that
    the sound stays with its pictures; what then still lies behind the last packet (the recording
    before ran on past its last picture) is left out. A track that steps back more than RESTART
    where the pictures did not goes on from its last packet's end; less, its packets behind are
    left out."""

    restarts: tuple = ()
    added: Fraction = Fraction(0)  # seconds added to its stamps from here on
    joins: int = 0  # the joins it has passed
    previous: Fraction | None = None  # the last packet's time, kept or not
    last: Fraction | None = None  # the last packet kept: its time, and its end
    end: Fraction | None = None
    cut: Fraction = Fraction(0)  # the duration of the packets left out behind a join

    def place(self, packet) -> bool:
        """Move the packet as its track's joins say; False where it is to be left out."""
        tb = packet.time_base
        stamp = packet.dts if packet.dts is not None else packet.pts
        if stamp is None or not tb:
            return True
        tb = Fraction(tb)
        time = stamp * tb + self.added
        if self.previous is not None and time < self.previous:  # the clock steps back
            if self.joins < len(self.restarts):
                self.added = self.restarts[self.joins]  # as the pictures were moved there
                self.joins += 1
            elif self.last - time > RESTART:
                self.added += self.end - time  # on its own: from its last packet's end
            time = stamp * tb + self.added
        self.previous = time
        if self.last is not None and time < self.last:  # behind what is already written
            self.cut += (packet.duration or 0) * tb
            return False
        ticks = round(self.added / tb)
        for name in ("pts", "dts"):
            value = getattr(packet, name)
            if value is not None:
                setattr(packet, name, value + ticks)
        self.last, self.end = time, time + (packet.duration or 0) * tb
        return True


class _LeadGate:
    """What goes to a Matroska/WebM muxer, held until the lead is known, then moved by it here.

    Matroska stores no time before 0, less an audio track's priming: where the first packet
    (the muxer peeks at those queued) starts earlier, its muxer moves every packet later by that
    much (an audio packet straddling the video's start), but not the chapters, which then sat
    that much early (23 ms for an x264 + AAC file made by the ffmpeg program). Holding the first
    packets (until every audio track has given one, or for at most HOLD_SECONDS of the timeline)
    gives the lead: the most any of them starts too early. All packets are moved by it here and
    the chapters with them, so the muxer moves nothing."""

    HOLD_SECONDS = 1

    def __init__(self, dst, audio_outs, before_first: Callable[[Fraction], None]):
        self.dst = dst
        self.waiting = set(audio_outs)
        self.before_first = before_first
        self.held: list = []
        self.lead: Fraction | None = None

    def mux(self, packets) -> None:
        for packet in packets if isinstance(packets, list) else [packets]:
            if self.lead is not None:
                self.dst.mux(self._moved(packet))
                continue
            self.held.append(packet)
            self.waiting.discard(packet.stream)
            # packets come in time order (the merge's): the span is the last less the first
            if not self.waiting or _time(packet) - _time(self.held[0]) > self.HOLD_SECONDS:
                self.flush()

    def flush(self) -> None:
        if self.lead is not None:
            return
        self.lead = max(
            [Fraction(0)]
            + [
                -Fraction(p.pts) * p.time_base - _priming(p.stream)
                for p in self.held
                if p.pts is not None
            ]
        )
        self.before_first(self.lead)
        for packet in self.held:
            self.dst.mux(self._moved(packet))
        self.held = []

    def _moved(self, packet):
        if self.lead:
            ticks = math.ceil(self.lead / packet.time_base)  # as FFmpeg rounds its own move
            if packet.pts is not None:
                packet.pts += ticks
            if packet.dts is not None:
                packet.dts += ticks
        return packet


def _priming(stream) -> Fraction:
    """How far before 0 the muxer lets this stream start: an audio codec's delay (AAC's 1024
    samples, as the source stated it or the encoder has it), which Matroska stores apart."""
    cc = stream.codec_context
    delay, rate = getattr(cc, "delay", 0) or 0, getattr(cc, "sample_rate", 0) or 0
    return Fraction(delay, rate) if stream.type == "audio" and rate else Fraction(0)


def _time(packet) -> Fraction:
    t = packet.dts if packet.dts is not None else packet.pts
    return Fraction(t or 0) * packet.time_base


def _rebuilt_dts(path: Path) -> list[int] | None:
    """The decoding times of a segment whose file stores none (Matroska), rebuilt from its
    presentation times: the k-th smallest pts, less the reorder delay, so that none is after its
    pts. None where the file has them (or lacks a pts to rebuild from). Reads timestamps only, so
    a segment's packets are never all held at once (a 4K ProRes segment is over a gigabyte)."""
    with av.open(str(path), metadata_errors="replace") as c:
        if "matroska" not in c.format.name:  # (WebM reads as "matroska,webm")
            return None  # the others store them: no second pass over the file
        stamps = [(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size]
    if all(dts is not None for _, dts in stamps) or any(pts is None for pts, _ in stamps):
        return None
    order = sorted(pts for pts, _ in stamps)
    delay = max(0, *(k - pts for k, (pts, _) in zip(order, stamps)))
    return [k - delay for k in order]


def _on_grid(ticks: int, tb: Fraction, rate: Fraction) -> int:
    """`ticks` (of `tb`) moved to the nearest point of the output's frame grid (i / rate), rounded
    to a tick as FFmpeg rescales (half away from zero)."""
    return _ticks(Fraction(round(ticks * tb * rate)) / rate / tb)


def _segment_packets(paths: list[Path], rate: Fraction | None = None):
    """Video packets of the segments in order, as (time, input id, order, packet).

    Each segment was encoded on its own. Where a segment stores no decoding times they are
    rebuilt (_rebuilt_dts). With the output's `rate`, every time goes back onto its frame grid
    and every packet lasts one frame: an MP4 segment that starts late reads back shifted by its
    edit list's rounding to the movie's millisecond timescale, which summed over the joints made
    the header rate inexact (1200000/20011 for 60000/1001). A decoding time that steps back at a
    joint (by the encoder's reorder delay) is nudged forward, never past its pts, to stay
    monotonic."""
    last_dts = None
    n = 0
    for path in paths:
        dts = _rebuilt_dts(path)
        with av.open(str(path), metadata_errors="replace") as c:
            packets = (p for p in c.demux(c.streams.video[0]) if p.size)
            for k, packet in enumerate(packets):
                if dts is not None:
                    packet.dts = dts[k]
                tb = Fraction(packet.time_base)
                if rate is not None:
                    _regrid(packet, tb, rate)
                if packet.dts is not None:
                    if last_dts is not None and packet.dts * tb <= last_dts:
                        packet.dts = min(packet.pts, math.floor(last_dts / tb) + 1)
                    last_dts = time = packet.dts * tb
                else:
                    time = Fraction(packet.pts or 0) * tb
                n += 1
                yield time, 0, n, packet


def _regrid(packet, tb: Fraction, rate: Fraction) -> None:
    if packet.pts is not None:
        packet.pts = _on_grid(packet.pts, tb, rate)
    if packet.dts is not None:
        packet.dts = _on_grid(packet.dts, tb, rate)
    packet.duration = _ticks(1 / rate / tb)


def _ticks(exact: Fraction) -> int:
    """A time in ticks, rounded as FFmpeg's rescaling does (to nearest, halves away from 0)."""
    half = Fraction(1, 2)
    return math.floor(exact + half) if exact >= 0 else -math.floor(-exact + half)


@dataclass
class Keep:
    """What of the source goes into the output besides the video."""

    source: Path | None  # None: video only (--slowmo, image sequences)
    video_start: Fraction = Fraction(0)  # source time of the first video frame
    display_matrix: tuple[int, ...] | None = None  # the source's rotation/flip, kept
    # where the pictures' clock started again (joined recordings): the reader's cumulative moves
    # of them, in order, which the other tracks follow (see _Clock)
    restarts: tuple = ()


def mux(
    video_paths: list[Path],
    keep: Keep,
    out: Path,
    fmt: str,
    warn: Callable[[str], None],
    rate: Fraction | None = None,
):
    """Write `out` (format `fmt`) from the encoded video segments and what `keep` names of the
    source. With the video's constant `rate`, every frame is timed on its grid and lasts one
    interval, and the header states that rate. Trouble with the other tracks never fails the
    video: it is then written alone."""
    try:
        if keep.source is not None:
            try:
                return _mux(video_paths, keep, out, fmt, warn, rate)
            except OSError:
                raise  # the disk, not the tracks: a second try would fail the same way
            except (
                av.FFmpegError, AttributeError, ValueError, TypeError, UnicodeDecodeError
            ) as exc:  # fmt: skip
                warn(
                    f"audio/subtitles could not be carried over ({type(exc).__name__}: {exc}); "
                    "video only"
                )
        video_only = Keep(None, keep.video_start, keep.display_matrix)
        return _mux(video_paths, video_only, out, fmt, warn, rate)
    except OSError as exc:
        # a full disk, a quota, a lost mount: one line; the segments and their journal stay
        raise OutputError(
            f"{out}: write failed ({getattr(exc, 'strerror', None) or exc}); the finished "
            "segments are kept: free space and rerun with --resume"
        ) from None


def _mux(video_paths, keep: Keep, out, fmt, warn, rate=None) -> MuxReport:
    report = MuxReport()
    with (
        av.open(str(video_paths[0]), metadata_errors="replace") as first,
        av.open(str(out), "w", format=fmt) as dst,
    ):
        # opaque: take the codec as it was read, so no encoder is looked up (this FFmpeg has an
        # AV1 encoder but no AV1 decoder under the encoder's name: the lookup would fail)
        vout = dst.add_stream_from_template(first.streams.video[0], opaque=True)
        if keep.display_matrix is not None:
            vout.set_display_matrix(list(keep.display_matrix))
        if rate is not None:
            # Matroska writes it as the track's default duration, as the ffmpeg program does
            vout.codec_context.framerate = rate
        feeds = [_segment_packets(video_paths, rate)]
        routes = {}
        covers = []
        to = dst  # or a _LeadGate in front of it
        src = _open_quietly(keep.source, warn) if keep.source is not None else None
        try:
            if src is not None:
                dst.metadata.update(kept_tags(src.metadata))
                main = main_video(src)
                if main is not None:
                    vout.metadata.update(kept_tags(main.metadata))
                    vout.disposition = main.disposition
                routes = _map_streams(src, dst, fmt, keep.video_start, report, warn)
                _copy_attachments(src, dst, fmt, report, warn)
                covers = _copy_covers(keep.source, src, dst, fmt, report, warn)
                if routes:
                    feeds.append(_shifted_packets(src, routes, 1, report, keep.restarts))
                if fmt in MOVES_NEGATIVE_PTS:
                    audio_outs = [r.out for r in routes.values() if r.out.type == "audio"]
                    to = _LeadGate(
                        dst,
                        audio_outs,
                        lambda lead: _copy_chapters(src, dst, keep.video_start, warn, lead),
                    )
                else:
                    _copy_chapters(src, dst, keep.video_start, warn)
            if report.dropped:
                warn(f"dropped, as {out.suffix} cannot hold them: {', '.join(report.dropped)}")
            for packet in covers:
                dst.mux(packet)
            for n, (_, gid, _, packet) in enumerate(heapq.merge(*feeds, key=lambda x: x[:3])):
                if n == 8:
                    crash_point("join")  # the output half written
                route = Route(vout, 0) if gid == 0 else routes[packet.stream]
                if route.reencode is not None:
                    transcode(packet, route.reencode, to.mux, warn)
                elif route.text:
                    convert(packet, route.out, to.mux, warn)
                else:
                    packet.stream = route.out
                    to.mux(packet)
            for route in routes.values():
                if route.reencode is not None:
                    to.mux(route.out.encode(None))
            if to is not dst:
                to.flush()
            for name, cut in sorted(report.overlap_cut.items()):
                if cut >= LEAD_NOTICE:
                    warn(
                        f"{name}: {float(cut):.2f} s left out where joined recordings overlap "
                        "(the one before ran on past its last picture; the next one's stays "
                        "with its pictures)"
                    )
            if report.lead_cut >= LEAD_NOTICE:
                warn(
                    f"the source's first {float(report.lead_cut):.2f} s of audio came before its "
                    "first picture and was left out: the output starts at that picture"
                )
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


def _copy_chapters(src, dst, video_start: Fraction, warn, lead: Fraction = Fraction(0)) -> None:
    """Chapters, moved with the rest of the timeline (the source's `video_start` to 0, then by
    the `lead` every packet was moved by: see _LeadGate); those that end before the video starts
    go."""
    try:
        chapters = []
        for ch in src.chapters():
            tb = Fraction(ch["time_base"])
            off = round(video_start / tb)
            start, end = ch["start"] - off, ch["end"] - off
            if end <= 0:
                continue
            move = round(lead / tb)
            chapters.append({**ch, "start": max(0, start) + move, "end": end + move})
        if chapters:
            dst.set_chapters(chapters)
    except (av.FFmpegError, AttributeError, TypeError, ValueError, KeyError) as exc:
        warn(f"chapters not carried over: {exc}")


def _copy_attachments(src, dst, fmt, report: MuxReport, warn) -> None:
    """Matroska attachments (fonts for ASS subtitles), into a container that holds them."""
    attachments = list(src.streams.attachments)
    if not attachments:
        return
    if fmt not in HOLDS_ATTACHMENTS:
        names = ", ".join(a.name or "?" for a in attachments)
        report.dropped.append(f"{len(attachments)} attachment(s) ({names})")
        return
    for a in attachments:
        try:
            dst.add_attachment(a.name or f"attachment{a.index}", a.mimetype or "", bytes(a.data))
            report.attachments += 1
        except (av.FFmpegError, ValueError, TypeError) as exc:
            warn(f"attachment {a.name} not carried over: {exc}")


def _copy_covers(path: Path, src, dst, fmt, report: MuxReport, warn) -> list:
    """Attached pictures (cover art, as yt-dlp embeds it) kept as the output's own, as the ffmpeg
    program's `-map 0` keeps them; other video streams than the one made are dropped, said.
    Returns the pictures' packets, to be muxed before the rest."""
    packets = []
    covers, extra = [], []
    main = main_video(src)
    for s in src.streams.video:
        if s.disposition & av.stream.Disposition.attached_pic:
            covers.append(s)
        elif s is not main:
            extra.append(s)
    if extra:
        warn(
            f"{', '.join(_describe(s) for s in extra)} dropped: rife makes one video stream "
            f"(from track {main.index})"
        )
    for s in covers:
        data = _cover_packet(path, s.index)
        name = s.codec_context.name if s.codec_context is not None else ""
        if data is None:
            continue
        if fmt in COVER_AS_STREAM:
            out = dst.add_stream_from_template(s, opaque=True)
            out.disposition = av.stream.Disposition.attached_pic
            out.metadata.update(kept_tags(s.metadata))
            data.stream = out
            packets.append(data)
            report.covers += 1
        elif fmt in HOLDS_ATTACHMENTS and name in COVER_MIME:
            mime, ext = COVER_MIME[name]
            filename = s.metadata.get("filename") or f"cover{ext}"
            dst.add_attachment(filename, s.metadata.get("mimetype") or mime, bytes(data))
            report.covers += 1
        else:
            report.dropped.append(f"cover picture ({name or 'unknown codec'})")
    return packets


def _cover_packet(path: Path, index: int):
    """The one packet of attached-picture stream `index` (read apart from the main demux)."""
    with av.open(str(path), metadata_errors="replace") as c:
        for packet in c.demux(c.streams[index]):
            if packet.size:
                packet.pts = packet.dts = None
                return packet
    return None


def _describe(s) -> str:
    lang = s.metadata.get("language")
    name = s.codec_context.name if s.codec_context is not None else "unknown codec"
    return f"{s.type} track {s.index} ({name}{', ' + lang if lang else ''})"


def _map_streams(src, dst, fmt, video_start: Fraction, report: MuxReport, warn) -> dict:
    ok = supported_codecs(fmt)
    routes = {}
    data = [str(s.index) for s in src.streams.data]
    if data:  # timecode, GPS, camera metadata: muxers take them only in their own formats
        warn(f"data track {', '.join(data)} (timecode, GPS or camera metadata) not carried over")
    for s in itertools.chain(src.streams.audio, src.streams.subtitles):
        if s.codec_context is None:
            report.dropped.append(_describe(s))
            continue
        offset = round(video_start / Fraction(s.time_base)) if s.time_base else 0
        name = s.codec_context.name
        out = None
        if _copies(s, fmt, ok):
            try:
                out = dst.add_stream_from_template(s)
                routes[s] = Route(out, offset)
                (report.audio if s.type == "audio" else report.subtitles).append(name)
            except (av.FFmpegError, ValueError) as exc:
                warn(f"stream {s.index} ({name}) not copied: {exc}")
        if out is None and s.type != "audio":
            out = open_converter(s, dst, fmt, warn)
            if out is None:
                report.dropped.append(_describe(s))
                continue
            routes[s] = Route(out, offset, text=True)
            report.subtitles.append(f"{name}->{out.codec_context.name}")
        if out is None:
            reencode = open_reencoder(s, dst, fmt, warn)
            if reencode is None:
                report.dropped.append(_describe(s))
                continue
            out = reencode.out
            routes[s] = Route(out, offset, reencode)
            report.audio.append(f"{name}->{out.codec_context.name}")
        out.metadata.update(kept_tags(s.metadata))
        if fmt == "mov" and "language" in out.metadata:
            out.metadata["language"] = _mov_language(s.index, out.metadata["language"], warn)
        out.disposition = s.disposition
    return routes


# ISO 639-2 languages with two codes (bibliographic and terminology): FFmpeg's MOV writer keeps
# only those in the Macintosh language table, which has one or the other ("fra" but "ger").
LANGUAGE_TWINS = dict(
    pair
    for b, t in (
        ("fre", "fra"), ("ger", "deu"), ("chi", "zho"), ("dut", "nld"), ("cze", "ces"),
        ("gre", "ell"), ("per", "fas"), ("rum", "ron"), ("slo", "slk"), ("alb", "sqi"),
        ("arm", "hye"), ("baq", "eus"), ("bur", "mya"), ("geo", "kat"), ("ice", "isl"),
        ("mac", "mkd"), ("mao", "mri"), ("may", "msa"), ("tib", "bod"), ("wel", "cym"),
    )
    for pair in ((b, t), (t, b))
)  # fmt: skip


def _mov_language(index: int, code: str, warn) -> str:
    """`code`, or its ISO 639-2 twin, whichever FFmpeg's MOV writer keeps; said where neither."""
    for candidate in (code, LANGUAGE_TWINS.get(code.lower())):
        if candidate and _mov_keeps_language(candidate):
            return candidate
    if code.lower() != "und":
        warn(
            f"track {index}'s language ({code}) not kept: .mov stores only the Macintosh "
            "language codes; .mkv or .mp4 keep it"
        )
    return code


@functools.lru_cache(maxsize=64)
def _mov_keeps_language(code: str) -> bool:
    """Whether a MOV written by this FFmpeg reads back with language `code` (a scratch file)."""
    data = io.BytesIO()
    try:
        with av.open(data, "w", format="mov") as scratch:
            stream = scratch.add_stream("pcm_s16le", rate=8000)  # a track needs a sample
            stream.layout = "mono"
            stream.metadata["language"] = code
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 8), np.int16), "s16", "mono")
            silence.sample_rate, silence.pts = 8000, 0
            for packet in stream.encode(silence) + stream.encode(None):
                scratch.mux(packet)
        data.seek(0)
        with av.open(data, format="mov") as back:
            return back.streams[0].metadata.get("language") == code
    except (av.FFmpegError, ValueError):
        return False


def _copies(s, fmt: str, ok: set[str]) -> bool:
    """Whether track `s` goes into `fmt` as it is: a codec the muxer lists, that it also writes
    (a scratch header in memory: MOV lists Opus and FLAC and MP4 lists TrueHD, then refuses
    them), and not PCM into MP4 (see audio.LOSSLESS_TARGET)."""
    name = s.codec_context.name
    if fmt == "mpegts":
        if s.codec_context.codec.canonical_name not in MPEGTS_TRACKS:
            return False
    elif name not in ok or (fmt == "mp4" and name.startswith("pcm_")):
        return False
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as scratch:
            scratch.add_stream_from_template(s)
            scratch.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False
