"""Reading a video (PyAV) or an image directory as timed BGR frames; probing what it holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import InputError, UsageError
from .images import list_images, read_image

# Rate given to an image sequence, which has none of its own.
IMAGE_SEQUENCE_RATE = Fraction(25)


@dataclass
class Colour:
    """The source's colour description, as FFmpeg enums (1 = BT.709, 5/6 = BT.601)."""

    matrix: int
    range: int  # 1 limited (MPEG), 2 full (JPEG)
    primaries: int
    transfer: int
    tagged: bool  # False: the matrix was guessed from the frame height


@dataclass
class SourceInfo:
    path: Path
    is_images: bool
    width: int
    height: int
    rate: Fraction  # average frame rate
    start: Fraction  # time of the first frame (seconds)
    duration: Fraction | None  # of the video stream, when known
    frames: int | None  # when known
    bits: int  # 8, 10, 12, 16
    pix_fmt: str | None
    colour: Colour | None
    images: list[Path] = field(default_factory=list)
    has_audio: bool = False
    has_subtitles: bool = False
    vfr: bool = False


@dataclass
class SourceFrame:
    index: int
    time: Fraction  # seconds
    duration: Fraction | None
    image: np.ndarray  # BGR uint8, or uint16 above 8 bits (gray/alpha kept for image sequences)
    original: av.VideoFrame | None = None  # the decoded frame, for passing through untouched
    thumb: np.ndarray | None = None  # scene-detection thumbnail, filled in by the pipeline


def _bits(pix_fmt: str) -> int:
    desc = av.VideoFormat(pix_fmt)
    return max(c.bits for c in desc.components) if desc.components else 8


# Accurate rounding and full chroma resolution: without them swscale shifts YUV<->RGB round trips
# by 1-4 code values (grey 29 came back as 24,27,25), so made frames would flicker against originals.
SWS_FLAGS = (
    Interpolation.BICUBIC
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)


def sws_matrix(matrix: int) -> int:
    """FFmpeg's colour-space enum -> the matrix constant swscale takes (601 for unknown ones)."""
    return {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}.get(matrix, 5)


def guess_matrix(height: int) -> int:
    # Untagged: HD and above is BT.709, SD is BT.601 (FFmpeg's enum: 1 = BT.709, 6 = SMPTE170M).
    return 1 if height >= 720 else 6


def probe(path: Path) -> SourceInfo:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path}: directory holds no images (PNG, JPEG, TIFF, EXR)")
        first = read_image(files[0])
        bits = 16 if first.dtype == np.uint16 else (32 if first.dtype == np.float32 else 8)
        return SourceInfo(
            path,
            True,
            first.shape[1],
            first.shape[0],
            IMAGE_SEQUENCE_RATE,
            Fraction(0),
            len(files) / IMAGE_SEQUENCE_RATE,
            len(files),
            bits,
            None,
            None,
            files,
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with av.open(str(path), metadata_errors="replace") as c:
            if not c.streams.video:
                raise InputError(f"{path}: no video stream (audio or data only)")
            s = c.streams.video[0]
            cc = s.codec_context
            if cc is None or not cc.width or not cc.height or cc.pix_fmt is None:
                raise InputError(f"{path}: video stream has no decodable picture size or format")
            rate = s.average_rate or s.guessed_rate or s.base_rate
            if not rate:
                raise InputError(f"{path}: video stream has no frame rate")
            rate = Fraction(rate)
            tb = Fraction(s.time_base) if s.time_base else None
            start = (
                Fraction(s.start_time) * tb if (s.start_time is not None and tb) else Fraction(0)
            )
            duration = Fraction(s.duration) * tb if (s.duration and tb) else None
            if duration is None and c.duration:
                duration = Fraction(c.duration, av.time_base)
            tagged = cc.colorspace not in (2, None) and cc.colorspace != 0
            matrix = cc.colorspace if tagged else guess_matrix(cc.height)
            colour = Colour(
                matrix=matrix,
                range=cc.color_range
                if cc.color_range in (1, 2)
                else (2 if cc.pix_fmt.startswith("yuvj") else 1),
                primaries=cc.color_primaries
                if cc.color_primaries not in (0, 2)
                else (1 if matrix == 1 else 6),
                transfer=cc.color_trc if cc.color_trc not in (0, 2) else (1 if matrix == 1 else 6),
                tagged=tagged,
            )
            vfr = bool(s.average_rate and s.base_rate and s.average_rate != s.base_rate)
            return SourceInfo(
                path,
                False,
                cc.width,
                cc.height,
                rate,
                start,
                duration,
                s.frames or None,
                _bits(cc.pix_fmt),
                cc.pix_fmt,
                colour,
                has_audio=bool(c.streams.audio),
                has_subtitles=bool(c.streams.subtitles),
                vfr=vfr,
            )
    except (
        av.FFmpegError,
        UnicodeDecodeError,
        ValueError,
        OverflowError,
        ZeroDivisionError,
    ) as exc:
        raise InputError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None


def _ffmpeg_reason(exc: Exception) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()[0][:120]


# Hardware decoders `--hwaccel` can name (FFmpeg device types; NVDEC is "cuda").
HWACCELS = ("cuda",)


def _open_video(path: Path, hwaccel: str | None):
    """The input container; with `hwaccel`, its video decoded on that device where FFmpeg has a
    hardware decoder for the codec (frames come back to host memory, e.g. as NV12), in software
    otherwise."""
    if not hwaccel:
        return av.open(str(path), metadata_errors="replace")
    from av.codec.hwaccel import HWAccel

    return av.open(
        str(path),
        metadata_errors="replace",
        hwaccel=HWAccel(device_type=hwaccel, allow_software_fallback=True),
    )


def check_hwaccel(info: SourceInfo, hwaccel: str) -> bool:
    """Before any work: the device can be opened for this input (a usage error otherwise). Returns
    whether its video stream is decoded in hardware (False: FFmpeg has no hardware decoder for
    this codec on that device, and software decodes it)."""
    if hwaccel not in HWACCELS:
        raise UsageError(f"--hwaccel {hwaccel!r}: use {' or '.join(HWACCELS)}")
    try:
        with _open_video(info.path, hwaccel) as c:
            return bool(c.streams.video[0].codec_context.is_hwaccel)
    except (av.FFmpegError, ValueError) as exc:
        raise UsageError(
            f"--hwaccel {hwaccel}: no {hwaccel} video decoder on this machine "
            f"({_ffmpeg_reason(exc)}); leave --hwaccel out to decode on the CPU"
        ) from None


def read_frames(
    info: SourceInfo, warn=None, stats: dict | None = None, hwaccel: str | None = None
) -> Iterator[SourceFrame]:
    """Decode in order (on the `hwaccel` device when given: see check_hwaccel). A packet the
    decoder rejects is skipped, counted in stats["bad_packets"], and warned about; the stream goes
    on (FFmpeg conceals what it can)."""
    if info.is_images:
        yield from _read_images(info)
        return
    stats = stats if stats is not None else {}
    stats.setdefault("bad_packets", 0)
    fmt = "bgr48le" if info.bits > 8 else "bgr24"
    colour = info.colour
    index = 0
    last_time = None
    try:
        with _open_video(info.path, hwaccel) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = Fraction(s.time_base)
            for frame in _decode_tolerant(c, s, info, warn, stats):
                if (frame.width, frame.height) != (info.width, info.height):
                    stats["bad_packets"] += 1
                    if warn:
                        warn(
                            f"{info.path}: frame {index} changed size to {frame.width}x{frame.height}; skipped"
                        )
                    continue
                if frame.pts is None:
                    time = (last_time + 1 / info.rate) if last_time is not None else info.start
                else:
                    time = Fraction(frame.pts) * tb
                if last_time is not None and time <= last_time:
                    if warn:
                        warn(
                            f"{info.path}: frame {index} has a timestamp out of order; placed after the last"
                        )
                    time = last_time + 1 / info.rate
                rgb = frame.reformat(
                    format=fmt,
                    src_colorspace=sws_matrix(colour.matrix),
                    src_color_range=colour.range,
                    dst_color_range=2,
                    interpolation=SWS_FLAGS,
                )
                dur = Fraction(frame.duration) * tb if frame.duration else None
                yield SourceFrame(index, time, dur, rgb.to_ndarray(), frame)
                last_time = time
                index += 1
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InputError(
            f"{info.path}: decoding failed after {index} frames ({_ffmpeg_reason(exc)})"
        ) from None


def _decode_tolerant(c, s, info, warn, stats):
    for packet in c.demux(s):
        try:
            frames = packet.decode()
        except (av.InvalidDataError, av.error.PatchWelcomeError, av.error.UndefinedError) as exc:
            stats["bad_packets"] += 1
            if warn and stats["bad_packets"] <= 3:
                warn(f"{info.path}: corrupt packet skipped ({_ffmpeg_reason(exc)})")
            continue
        yield from frames


def _read_images(info: SourceInfo) -> Iterator[SourceFrame]:
    first_shape = None
    for i, p in enumerate(info.images):
        img = read_image(p)
        if first_shape is None:
            first_shape = img.shape
        elif img.shape != first_shape:
            raise InputError(
                f"{p}: size/channels {img.shape} differ from the first image {first_shape}"
            )
        yield SourceFrame(i, i / info.rate, 1 / info.rate, img)
