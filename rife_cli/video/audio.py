"""Audio the output cannot take as it is: the codec and channel layout it is re-encoded to, and
its samples on the source's timeline.

A lossless source stays lossless where the container holds a lossless codec that older readers
know (FLAC in MP4 and Matroska, PCM in MOV); anything else gets the container's usual lossy
codec. Every choice is tried on a scratch file first, so a codec or layout the muxer or encoder
refuses falls back here instead of failing the whole output.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .sink import suffix_of

# The container's usual codec for a lossy source (or where no lossless one fits).
LOSSY_TARGET = {"mp4": "aac", "mov": "aac", "webm": "libopus", "matroska": "aac", "mpegts": "aac"}
# A lossless source into these stays lossless. PCM in MP4 would be ISO/IEC 23003-5 `ipcm`, which
# FFmpeg writes from 6.1 on and older readers (the ffmpeg program 5.1, players built on it)
# decode as 16-bit noise; FLAC in MP4 they read. "pcm": PCM at the source's depth.
LOSSLESS_TARGET = {"mp4": "flac", "matroska": "flac", "mov": "pcm", "nut": "flac"}
LOSSLESS_CODECS = {"flac", "alac", "truehd", "mlp", "wavpack", "tta", "ape", "shorten", "tak"}
PCM_BITS = re.compile(r"pcm_([suf])(\d+)")
# Companded 8-bit PCM decodes to 16-bit samples, exactly.
COMPANDED = {"pcm_alaw", "pcm_mulaw"}
# FFmpeg's channel numbering (enum AVChannel): a layout in native order lists its channels so.
CHANNEL_ORDER = (
    "FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC", "BC", "SL", "SR",
    "TC", "TFL", "TFC", "TFR", "TBL", "TBC", "TBR",
)  # fmt: skip
# Other layouts of the same channel count an encoder may take instead (libopus takes 5.1 but
# not 5.1(side)); swresample maps side to back channels and so on when converting.
SAME_COUNT = {
    3: ("3.0", "2.1", "3.0(back)"),
    4: ("quad", "4.0", "quad(side)"),
    5: ("5.0", "5.0(side)"),
    6: ("5.1", "5.1(side)"),
    7: ("6.1", "6.1(back)", "6.1(front)"),
    8: ("7.1", "7.1(wide)", "7.1(wide-side)"),
}
# A gap in the source's audio of at least this much is kept as silence (the re-encoded samples
# are otherwise timed back to back, and everything after the gap would play early).
GAP = Fraction(1, 100)


@dataclass
class Reencode:
    """How one source track is re-encoded: into `out`, from frames converted to its format."""

    out: object  # the output stream
    resampler: av.AudioResampler
    layout: str  # the layout the source's frames are labelled with once decoded
    order: list[int] | None  # PCM in a channel order of its own: its channels in native order
    next_pts: int | None = None  # pts of the next output sample


def is_lossless(name: str) -> bool:
    return name.startswith("pcm_") or name in LOSSLESS_CODECS


def source_bits(name: str, sample_format: str) -> int:
    """The depth of a lossless source's samples (above 24: float or 32-bit PCM)."""
    if name in COMPANDED:
        return 16
    m = PCM_BITS.match(name)
    if m:
        return 32 if m.group(1) == "f" else int(m.group(2))
    return 16 if sample_format.startswith("s16") else 24


def decoding_layout(cc) -> tuple[str, list[int] | None]:
    """The native channel layout to decode stream codec context `cc` as, and for PCM whose
    channels come in an order of their own (MOV's channel atom), the permutation into native
    order. Sets it on `cc` before it opens: PyAV 18.1 frees a custom-order layout's channel map
    when the Python object that read it goes, and the codec context and every decoded frame
    then free it again (a crash, "double free or corruption"); a native layout owns no map."""
    layout = cc.layout  # read once, and replaced below before anything else uses the map
    name, count = layout.name, layout.nb_channels
    order = None
    custom = re.fullmatch(r"\d+ channels \((.+)\)", name)
    if custom:
        names = custom.group(1).split("+")
        native = sorted(names, key=lambda c: CHANNEL_ORDER.index(c) if c in CHANNEL_ORDER else -1)
        known = all(c in CHANNEL_ORDER for c in names) and len(set(names)) == count
        target = av.AudioLayout("+".join(native)).name if known else _default_layout(count)
        if known and cc.name.startswith("pcm_") and native != names:
            order = [names.index(c) for c in native]
    elif re.fullmatch(r"\d+ channels?", name) or not count:
        target = _default_layout(count)  # only a count stated: FFmpeg's usual layout for it
    else:
        target = name
    if "channels" in target:  # not representable in native order
        target = _default_layout(count)
    cc.layout = target
    return target, order


def _default_layout(count: int) -> str:
    return av.AudioLayout(f"{max(count, 1)}c").name


def open_reencoder(s, dst, fmt: str, warn: Callable[[str], None]) -> Reencode | None:
    """A stream in `dst` that source track `s` is re-encoded into, or None (said) where no codec
    and layout that the container and encoder take was found."""
    name = s.codec_context.name
    try:
        layout, order = decoding_layout(s.codec_context)
    except (av.FFmpegError, ValueError) as exc:
        warn(f"audio track {s.index} ({name}) dropped: its channel layout ({exc})")
        return None
    rate = s.codec_context.sample_rate or 48000
    bits = source_bits(name, s.codec_context.format.name if s.codec_context.format else "")
    keep = _lossless_codec(fmt, bits) if is_lossless(name) and fmt in LOSSLESS_TARGET else None
    layouts = dict.fromkeys((layout, *SAME_COUNT.get(av.AudioLayout(layout).nb_channels, ())))
    for codec in [c for c in (keep, LOSSY_TARGET.get(fmt, "aac")) if c]:
        for out_layout in layouts:
            settings = _settings(codec, out_layout, rate, bits)
            if not _takes(fmt, settings):
                continue
            out = _add(dst, settings)
            _, _, out_rate, sample_fmt = settings
            resampler = av.AudioResampler(format=sample_fmt, layout=out_layout, rate=out_rate)
            warn(_notice(s.index, name, fmt, codec, bits, codec == keep))
            return Reencode(out, resampler, layout, order)
    warn(f"audio track {s.index} ({name}) dropped: no encoder here writes it into {suffix_of(fmt)}")
    return None


def _lossless_codec(fmt: str, bits: int) -> str:
    if LOSSLESS_TARGET[fmt] == "pcm":
        return "pcm_s16le" if bits <= 16 else "pcm_s24le"
    return LOSSLESS_TARGET[fmt]


def _settings(codec: str, layout: str, rate: int, bits: int) -> tuple[str, str, int, str]:
    """(codec, layout, sample rate, sample format) for an encoder."""
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    if codec == "flac":
        sample_fmt = "s16" if bits <= 16 else "s32"  # FLAC's s32 holds 24 bits
    else:
        sample_fmt = av.codec.Codec(codec, "w").audio_formats[0].name
    return codec, layout, rate, sample_fmt


def _add(container, settings):
    codec, layout, rate, sample_fmt = settings
    out = container.add_stream(codec, rate=rate)
    out.layout = layout
    out.format = sample_fmt
    return out


def _takes(fmt: str, settings) -> bool:
    """Whether the encoder opens with `settings` and the muxer for `fmt` writes its stream: one
    frame of silence into a scratch file in memory."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as scratch:
            out = _add(scratch, settings)
            frame = _silence(out, max(out.codec_context.frame_size or 0, 1024), 0)
            for packet in out.encode(frame) + out.encode(None):
                scratch.mux(packet)
        return True
    except (av.FFmpegError, ValueError, NotImplementedError):
        return False


def _silence(out, samples: int, pts: int):
    cc = out.codec_context
    frame = av.AudioFrame(format=cc.format.name, layout=cc.layout.name, samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate, frame.pts, frame.time_base = cc.sample_rate, pts, Fraction(1, cc.sample_rate)
    return frame


def _notice(index: int, name: str, fmt: str, codec: str, bits: int, lossless: bool) -> str:
    """What became of the track; `lossless`: re-encoded with a lossless codec."""
    kept = ("lossless" if bits <= 24 else "converted to 24-bit") if lossless else ""
    if fmt == "mp4" and name.startswith("pcm_") and codec == "flac":
        return (
            f"audio track {index} ({name}) written into .mp4 as FLAC ({kept}): PCM in MP4 "
            "reads as noise in older players"
        )
    shown = "FLAC" if codec == "flac" else ("PCM" if codec.startswith("pcm_") else codec)
    return (
        f"audio track {index} ({name}) cannot go into {suffix_of(fmt)}; re-encoded as {shown}"
        + (f" ({kept})" if kept else "")
    )


def transcode(packet, route: Reencode, mux: Callable, warn: Callable[[str], None]) -> None:
    """Decode, convert and encode one (already shifted) packet of the source track, its samples
    timed from the first one kept; a gap in the source's timestamps is kept as silence, so what
    follows it stays in step with the video."""
    out = route.out
    rate = out.codec_context.sample_rate
    try:
        for frame in packet.decode():
            start = Fraction(frame.pts) * frame.time_base if frame.pts is not None else None
            if route.next_pts is None:
                start = start or Fraction(0)
                if start + Fraction(frame.samples, frame.sample_rate) <= 0:
                    continue  # wholly before the video's first frame
                route.next_pts = round(start * rate)
            elif start is not None:
                gap = round(start * rate) - route.next_pts
                if gap >= GAP * rate:
                    mux(out.encode(_silence(out, gap, route.next_pts)))
                    route.next_pts += gap
            if route.order is not None:
                frame = _reordered(frame, route.order, route.layout)
            for f in route.resampler.resample(frame):
                f.pts, f.time_base = route.next_pts, Fraction(1, rate)
                route.next_pts += f.samples
                mux(out.encode(f))
    except av.FFmpegError as exc:
        warn(f"audio packet skipped: {exc}")


def _reordered(frame, order: list[int], layout: str):
    """`frame`'s channels put into native order (PCM from a channel order of its own)."""
    data = frame.to_ndarray()
    if frame.format.is_planar:
        data = data[order]
    else:
        data = data.reshape(-1, len(order))[:, order].reshape(1, -1)
    moved = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), frame.format.name, layout)
    moved.sample_rate, moved.pts, moved.time_base = frame.sample_rate, frame.pts, frame.time_base
    return moved
