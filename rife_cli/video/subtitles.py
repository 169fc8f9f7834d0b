"""Text subtitles the output cannot take as they are, converted to the text format it holds (as
the ffmpeg program does by default): MP4/MOV take mov_text, WebM WebVTT, Matroska ASS. Bitmap
subtitles (DVD, PGS) have no such conversion and are dropped, said."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import av

from .sink import suffix_of

TEXT_TARGET = {"mp4": "mov_text", "mov": "mov_text", "webm": "webvtt", "matroska": "ass"}
TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"}
MS = Fraction(1, 1000)  # subtitle encoders time a cue in milliseconds


def open_converter(s, dst, fmt: str, warn: Callable[[str], None]):
    """An output stream that text subtitle track `s` is converted into, or None where it is not
    text or `fmt` holds no text format."""
    target = TEXT_TARGET.get(fmt)
    if target is None or s.codec_context.codec.canonical_name not in TEXT_SUBTITLES:
        return None
    try:
        s.codec_context.open(strict=False)  # the decoder makes the ASS header the encoder needs
        out = dst.add_stream(target)
        out.codec_context.subtitle_header = s.codec_context.subtitle_header
        out.codec_context.time_base = MS
    except (av.FFmpegError, ValueError) as exc:
        warn(f"subtitle track {s.index} not converted: {exc}")
        return None
    warn(
        f"subtitle track {s.index} ({s.codec_context.name}) converted to {target} for "
        f"{suffix_of(fmt)}"
        " (styling beyond what it holds is lost)"
    )
    return out


def convert(packet, out, mux: Callable, warn: Callable[[str], None]) -> None:
    """One (already shifted) cue of the source track, re-encoded into `out` at its time."""
    try:
        cue = packet.stream.codec_context.decode2(packet)
        if cue is None or packet.pts is None:
            return
        converted = out.codec_context.encode_subtitle(cue)
    except (av.FFmpegError, ValueError) as exc:
        warn(f"subtitle cue skipped: {exc}")
        return
    converted.stream = out
    converted.time_base = MS
    converted.pts = converted.dts = round(packet.pts * packet.time_base / MS)
    mux(converted)
