"""Reading a video (PyAV) or an image directory as timed frames (BGR, or YUV planes for the device to
convert); probing what it holds."""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..engine.colour import FORMATS as DEVICE_FORMATS
from ..engine.colour import Yuv420, chroma_cosited, full_range_format, plane_rows
from ..errors import InputError, UsageError
from ..pipeline import scenes
from . import filters, nvdec
from .filters import Interlace, main_video
from .grid import Grid, candidate_rates, find_grid, step_rate, tolerance
from .images import list_images, read_image
from .timeline import RESTART_FRAMES, Timeline, jump_after

# Side of the small picture a planes-mode frame's scene thumbnail is averaged from.
THUMB_SOURCE = 4 * scenes.THUMB
# Rate given to an image sequence, which has none of its own, unless one is asked for (--input-fps).
IMAGE_SEQUENCE_RATE = Fraction(25)
# Packets whose timestamps decide whether a stream is constant-rate (about half a minute at
# 24 fps; later frames are still snapped to the grid found, or kept as they are if off it).
SCAN_PACKETS = 720
REORDER_MAX = 16  # pictures a decoder may hold for reordering (H.264 and HEVC: 16 at most)


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
    # False where `duration` is the file's, which audio outlasting the picture may set (Matroska
    # without statistics tags): then no "pictures end early" warning is drawn from it.
    duration_is_video: bool = True
    vfr: bool = False
    # The exact grid the frame times are snapped to (see grid.py); None: placed by timestamps.
    grid: Grid | None = None
    # The probe saw the timestamps jump forward (joined recordings): read_frames holds the gap
    # and puts the pictures after it back on the grid, so their grid places are not their order.
    jumps: bool = False
    picture: Picture = field(default_factory=lambda: Picture())
    # Set by the caller before reading: deinterlace (the info is then the field rate's: see
    # as_fields), and the stream's decoded size where width x height is a crop of it.
    interlace: Interlace | None = None
    stream_size: tuple[int, int] | None = None
    # A video with an alpha channel (a yuva/rgba format, or VP8/VP9 in WebM stating AlphaMode,
    # whose alpha FFmpeg's own decoders leave out): rife writes opaque video, said once.
    alpha: bool = False


def has_alpha(pix_fmt: str | None) -> bool:
    try:
        return pix_fmt is not None and len(av.VideoFormat(pix_fmt).components) in (2, 4)
    except (ValueError, av.FFmpegError):
        return False


@dataclass
class Picture:
    """What the source says about how its pictures are shown, kept on the output."""

    display_matrix: tuple[int, ...] | None = None  # FFmpeg's 3x3 layout (rotation, flips)
    rotation: int = 0  # degrees counter-clockwise, as FFmpeg reports it
    sar: Fraction | None = None  # sample aspect ratio, when not square
    mastering_display: bytes | None = None  # HDR10 side data, FFmpeg's struct as stored
    content_light: bytes | None = None


@dataclass
class SourceFrame:
    index: int
    time: Fraction  # seconds
    duration: Fraction | None
    # BGR uint8, or uint16 above 8 bits (gray/alpha kept for image sequences); None when the
    # picture is kept as its YUV planes instead (`planes`, converted on the device).
    image: np.ndarray | None
    original: av.VideoFrame | None = None  # the decoded frame, for passing through untouched
    thumb: np.ndarray | None = None  # scene-detection thumbnail, filled in by the pipeline
    edge: str = ""  # what separates it from the frame before: scenes.CUT, scenes.FLASH or ""
    planes: Yuv420 | None = None

    @property
    def picture(self) -> np.ndarray | Yuv420:
        """What the network's input is made from: the BGR image, or the YUV planes."""
        return self.image if self.image is not None else self.planes

    @property
    def nbytes(self) -> int:
        return self.picture.nbytes


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


def probe(path: Path, image_rate: Fraction | None = None) -> SourceInfo:
    """What the input holds. A directory of images is played at `image_rate` (default
    IMAGE_SEQUENCE_RATE); a video's rate comes from the file."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path}: directory holds no images (PNG, JPEG, TIFF, EXR)")
        first = read_image(files[0])
        bits = 16 if first.dtype == np.uint16 else (32 if first.dtype == np.float32 else 8)
        rate = Fraction(image_rate) if image_rate is not None else IMAGE_SEQUENCE_RATE
        return SourceInfo(
            path,
            True,
            first.shape[1],
            first.shape[0],
            rate,
            Fraction(0),
            len(files) / rate,
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
            s = main_video(c)
            if s is None:
                raise InputError(f"{path}: no video stream (only a cover picture)")
            cc = s.codec_context
            if cc is None or not cc.width or not cc.height or cc.pix_fmt is None:
                raise InputError(f"{path}: video stream has no decodable picture size or format")
            stated = s.average_rate or s.guessed_rate or s.base_rate
            if not stated:
                raise InputError(f"{path}: video stream has no frame rate")
            tb = Fraction(s.time_base) if s.time_base else None
            times, first, complete = _scan(c, s, tb)
            closed, jumped = _jumps_closed(times)
            regular = find_grid(
                closed, tb, candidate_rates((s.base_rate, s.average_rate, s.guessed_rate))
            )
            rate = regular.grid.rate if regular.grid is not None else Fraction(stated)
            if first is not None and first.pts is not None and tb:
                start = Fraction(first.pts) * tb  # where decoding starts: the grid's origin
            elif times:
                start = min(times)
            else:
                start = Fraction(s.start_time) * tb if (s.start_time is not None and tb) else 0
            duration, duration_is_video = _video_duration(s, c, Fraction(start))
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
            return SourceInfo(
                path,
                False,
                cc.width,
                cc.height,
                rate,
                Fraction(start),
                duration,
                (len(times) if complete else s.frames) or None,
                _bits(cc.pix_fmt),
                cc.pix_fmt,
                colour,
                has_audio=bool(c.streams.audio),
                has_subtitles=bool(c.streams.subtitles),
                duration_is_video=duration_is_video,
                vfr=not regular.constant,
                grid=regular.grid,
                jumps=jumped,
                picture=_picture(first, s),
                alpha=has_alpha(cc.pix_fmt)
                or any(k.lower() == "alpha_mode" and v == "1" for k, v in s.metadata.items()),
            )
    except (
        av.FFmpegError,
        UnicodeDecodeError,
        ValueError,
        OverflowError,
        ZeroDivisionError,
    ) as exc:
        raise InputError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None


def _jumps_closed(times: list[Fraction]) -> tuple[list[Fraction], bool]:
    """The scanned times with each forward jump (a gap over jump_after: joined recordings) closed
    to one step, and whether there was one. read_frames holds a jump on the picture before it and
    puts the pictures after it back on the grid, so a jump is neither frames missing nor a
    variable rate."""
    ts = sorted(set(times))
    rate = step_rate(ts)
    if rate is None:
        return ts, False
    closed, shift = ts[:1], Fraction(0)
    for a, b in itertools.pairwise(ts):
        if b - a > jump_after(rate):
            shift += b - a - 1 / rate
        closed.append(b - shift)
    return closed, shift != 0


def _scan(c, s, tb: Fraction | None) -> tuple[list[Fraction], av.VideoFrame | None, bool]:
    """Presentation times of the stream's first SCAN_PACKETS packets (those an edit list discards
    left out), its first decoded picture, and whether the scan reached the end of the stream."""
    times: list[Fraction] = []
    first = None
    complete = True
    # AVI stores no presentation times: FFmpeg guesses them around B-frames (one frame's time
    # twice); its decoding times are the frame indexes, in order.
    decode_order = c.format.name == "avi"
    keyframe = False
    for packet in c.demux(s):
        if packet.size == 0:
            continue
        # A stream cut mid-group (a recording or download that starts anywhere) begins with
        # pictures the decoder drops for want of their keyframe: their times are not the
        # stream's, and one of them lost in the cut would read as a frame missing.
        keyframe = keyframe or packet.is_keyframe
        if not keyframe:
            continue
        if first is None:
            try:
                first = next(iter(packet.decode()), None)
            except av.FFmpegError:
                pass
        if len(times) >= SCAN_PACKETS:
            complete = False
            # Packets come in decoding order: the scan stops with pictures still to come that
            # show before some it has seen (B-frames): the latest times it has are not all there
            # is, and those gaps are not the stream's. At most REORDER_MAX pictures are ahead.
            times = sorted(times)[:-REORDER_MAX]
            break
        t = packet.dts if decode_order or packet.pts is None else packet.pts
        if t is not None and tb and not packet.is_discard:
            times.append(Fraction(t) * tb)
    if first is None:
        try:
            first = next(iter(s.codec_context.decode(None)), None)  # a decoder holding frames back
        except av.FFmpegError:
            pass
    return times, first, complete


def _picture(first: av.VideoFrame | None, s) -> Picture:
    """Display matrix and HDR side data of the first picture (FFmpeg hands the stream's own to
    decoded frames), and the sample aspect ratio."""
    pic = Picture()
    sar = s.sample_aspect_ratio or (
        s.codec_context.sample_aspect_ratio if s.codec_context else None
    )
    if sar and Fraction(sar) != 1:
        pic.sar = Fraction(sar)
    if first is None:
        return pic
    for sd in first.side_data:
        name = getattr(sd.type, "name", str(sd.type))
        if name == "DISPLAYMATRIX":
            m = tuple(int(v) for v in np.frombuffer(bytes(sd), dtype="<i4")[:9])
            if m != (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30):
                pic.display_matrix = m
                pic.rotation = round(first.rotation or 0)
        elif name == "MASTERING_DISPLAY_METADATA":
            pic.mastering_display = bytes(sd)
        elif name == "CONTENT_LIGHT_LEVEL":
            pic.content_light = bytes(sd)
    return pic


def _ffmpeg_reason(exc: Exception) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()[0][:120]


# Hardware decoders `--hwaccel` can name (FFmpeg device types; NVDEC is "cuda").
HWACCELS = ("cuda",)


def _open_video(path: Path, hwaccel: str | None, keep_on_device: bool = False):
    """The input container; with `hwaccel`, its video decoded on that device where FFmpeg has a
    hardware decoder for the codec (frames come back to host memory, e.g. as NV12, or with
    `keep_on_device` stay in the device's memory: see rife_cli.video.nvdec), in software
    otherwise. `hwaccel` may name the device's index after a colon ("cuda:1": a --devices
    worker's own GPU); without one FFmpeg takes the first."""
    if not hwaccel:
        return av.open(str(path), metadata_errors="replace")
    from av.codec.hwaccel import HWAccel

    kind, _, index = hwaccel.partition(":")
    return av.open(
        str(path),
        metadata_errors="replace",
        hwaccel=HWAccel(
            device_type=kind,
            device=index or None,
            allow_software_fallback=True,
            is_hw_owned=keep_on_device,
        ),
    )


def decoded_on_device(ctx, hwaccel: str) -> bool:
    """Whether a decoder that has given a frame gave it from the hardware decoder: the pixel
    format FFmpeg chose for the stream is the device's own. Not `is_hwaccel`, which is true as
    soon as the device opens, also where FFmpeg then falls back to software for this stream (a
    profile NVDEC lacks, such as 4:2:2 or 4:4:4). PyAV copies a hardware frame to host memory
    (NV12 and the like) before we see it, so the frame's own format cannot tell."""
    return bool(ctx.is_hwaccel) and ctx.pix_fmt == hwaccel


def check_hwaccel(info: SourceInfo, hwaccel: str) -> bool:
    """Before any work: the device can be opened for this input (a usage error otherwise). Returns
    whether its video stream's frames come from the hardware decoder (False: FFmpeg has none
    for this codec or profile on that device, and software decodes it), told by decoding the
    first frame."""
    if hwaccel not in HWACCELS:
        raise UsageError(f"--hwaccel {hwaccel!r}: use {' or '.join(HWACCELS)}")
    try:
        with _open_video(info.path, hwaccel) as c:
            s = main_video(c)
            if next(iter(c.decode(s)), None) is None:
                return False
            return decoded_on_device(s.codec_context, hwaccel)
    except (av.FFmpegError, ValueError) as exc:
        raise UsageError(
            f"--hwaccel {hwaccel}: no {hwaccel} video decoder on this machine "
            f"({_ffmpeg_reason(exc)}); leave --hwaccel out to decode on the CPU"
        ) from None


def read_frames(
    info: SourceInfo,
    warn=None,
    stats: dict | None = None,
    hwaccel: str | None = None,
    planes: bool = False,
    start_at: Fraction | None = None,
    device=None,
) -> Iterator[SourceFrame]:
    """Decode in order (on the `hwaccel` device when given: see check_hwaccel). With `start_at`,
    only the frames from that time on (a shard of the stream): a constant-rate stream is entered
    by seeking, its frames numbered from their place on the grid; any other is decoded from the
    start, as it has no other way to number its frames. With `planes`,
    pictures in a format the device converts (8 or 10 bits, 4:2:0, 4:2:2, 4:4:4; see
    rife_cli.engine.colour.LAYOUTS; others as BGR) come as their YUV planes for the device to convert (rife_cli.engine.colour)
    instead of as BGR images, with a scene thumbnail made here from the small picture. A packet the
    decoder rejects is skipped, counted in stats["bad_packets"], and warned about; the stream goes
    on (FFmpeg conceals what it can). A picture of another size than the stream's is skipped,
    scaled to the stream's size (shape kept, padded), counted in stats["resized_frames"], warned
    about at each change, and tagged as a cut (scenes.SIZE). With info.interlace, each field
    comes as a frame (filters.Deinterlacer); with info.stream_size, pictures are cropped to
    width x height. With `device` (a torch.device on CUDA), `hwaccel` and `planes`, NVDEC's pictures
    stay on the GPU and their planes reach the engine there (rife_cli.video.nvdec)."""
    if info.is_images:
        yield from (f for f in _read_images(info) if start_at is None or f.time >= start_at)
        return
    # A deinterlaced stream's fields are numbered as they come: decoded from the start.
    seeking = start_at is not None and info.grid is not None and not info.vfr
    seeking = seeking and info.interlace is None and not info.jumps
    stats = stats if stats is not None else {}
    stats.setdefault("bad_packets", 0)
    stats.setdefault("resized_frames", 0)
    fmt = "bgr48le" if info.bits > 8 else "bgr24"
    colour = info.colour
    index = 0
    # the grid's origin: the first frame's time, or the stream's for a shard entered by seeking
    timeline = Timeline(info, info.start if seeking else None, stats, warn)
    even = info.width % 2 == 0 and info.height % 2 == 0
    cosited = None  # the stream's chroma siting, once a picture has shown it
    stream_size = info.stream_size or (info.width, info.height)
    fitter = filters.Fitter(info.width, info.height, info.picture.sar, stream_size)
    changes = 0
    file_size = info.path.stat().st_size
    kept = None  # NVDEC's pictures for the engine, on its GPU
    if device is not None and hwaccel and planes and even and info.interlace is None:
        kept = nvdec.DevicePictures(device, str(info.path), warn)
    try:
        with _open_video(info.path, hwaccel, keep_on_device=kept is not None) as c:
            s = main_video(c)
            s.thread_type = "AUTO"
            tb = Fraction(s.time_base)
            if seeking and start_at > info.start:
                # to the keyframe before, with a second to spare for reordered frames
                c.seek(max(0, math.floor((start_at - 1) / tb)), stream=s, backward=True)
            deint = None
            if info.interlace is not None:
                deint = filters.Deinterlacer(info.interlace, tb)
            decoded = _decode_tolerant(c, s, info, warn, stats)
            if c.format.name == "avi":
                decoded = _stamps_in_order(decoded)
            decoded = _whole_tail(decoded, info, warn, stats)
            if kept is not None:
                decoded = _settled(decoded, kept, (info.width, info.height))
            for frame, size, change in filters.apply(decoded, fitter, deint):
                stats["resized_frames"] += size != stream_size
                ftb = Fraction(frame.time_base) if frame.time_base else tb
                time, on_grid, jump = timeline.place(frame, ftb, index)
                if change:
                    changes += 1
                    if warn and changes <= 3:
                        back = size == stream_size
                        warn(
                            f"{info.path}: from frame {index} ({float(time - info.start):.2f} s) "
                            f"the picture is {size[0]}x{size[1]}"
                            + (
                                " again"
                                if back
                                else f", scaled to {info.width}x{info.height} (shape kept, padded)"
                            )
                            + "; nothing is blended across the change"
                        )
                if on_grid:
                    dur = 1 / info.grid.rate
                else:
                    dur = Fraction(frame.duration) * ftb if frame.duration else None
                if seeking:
                    index = info.grid.index(timeline.origin, time) if on_grid else index
                if start_at is not None and time < start_at:
                    timeline.passed(time)
                    index += 1
                    continue
                samples = None  # the picture's samples on the engine's GPU
                if kept is not None and nvdec.on_gpu(frame):
                    # left on the GPU for the engine (_settled): its samples taken there, and
                    # the picture itself in host memory from here on
                    samples, frame = kept.take(frame, frame_samples)
                if planes and frame.format.name in DEVICE_FORMATS and even:
                    out = _as_planes(SourceFrame(index, time, dur, None, frame), colour, samples)
                    if cosited is None:
                        pic = out.planes if samples is None else _on_host(out.planes, frame)
                        cosited = chroma_cosited(pic, _bgr(frame, fmt, colour))
                    out.planes.cosited = cosited
                else:
                    out = SourceFrame(index, time, dur, _bgr(frame, fmt, colour), frame)
                if change:
                    out.edge = scenes.SIZE
                elif jump:
                    out.edge = scenes.JUMP
                yield out
                timeline.passed(time)
                index += 1
            timeline.finish()
            if info.path.stat().st_size != file_size:
                if warn:  # (a copy in progress: then _warn_if_cut_short says nothing more)
                    warn(
                        f"{info.path}: the file grew while it was read (still being copied?); "
                        f"taken as it was read: {index} frames"
                    )
            else:
                _warn_if_cut_short(info, timeline.last, warn)
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InputError(
            f"{info.path}: decoding failed after {index} frames ({_ffmpeg_reason(exc)})"
        ) from None


def clock_restarts(info: SourceInfo) -> bool:
    """Whether the video's clock starts again anywhere (recordings joined with cat): its decoding
    times step back RESTART_FRAMES or more. Read from the packets alone, over the whole file
    (the probe sees only its start): the source times shards are cut at repeat after such a
    step, so the input cannot be cut by time."""
    if info.is_images:
        return False
    limit = RESTART_FRAMES / info.rate
    try:
        with av.open(str(info.path), metadata_errors="replace") as c:
            s = main_video(c)
            tb = Fraction(s.time_base) if s.time_base else None
            last = None
            for packet in c.demux(s):
                # decoding times only: presentation times step back at every B-frame
                if packet.dts is None or tb is None:
                    continue
                time = packet.dts * tb
                if last is not None and last - time >= limit:
                    return True
                last = time if last is None else max(last, time)
    except (av.FFmpegError, ValueError, OverflowError):
        pass  # what cannot be read is the reader's to say
    return False


def as_fields(info: SourceInfo, interlace: Interlace) -> SourceInfo:
    """The source as the deinterlaced stream read_frames makes of it: one frame per field, at
    twice the frame rate, on a grid of half the step."""
    grid = None
    if info.grid is not None:
        grid = Grid(2 * info.grid.rate, min(info.grid.tol, tolerance(None, 2 * info.grid.rate)))
    return replace(
        info,
        rate=2 * info.rate,
        grid=grid,
        frames=2 * info.frames if info.frames else None,
        interlace=interlace,
    )


def _video_duration(s, c, start: Fraction) -> tuple[Fraction | None, bool]:
    """The video stream's duration, and whether it is the video's own: as the stream states it,
    else from Matroska's statistics tag (DURATION: FFmpeg writes the track's end time there, so
    less the stream's `start` where that is before it), else the file's, which is the video's
    only where no audio can run longer than the picture."""
    tb = s.time_base
    if s.duration and tb:
        return Fraction(s.duration) * tb, True
    tag = next((v for k, v in s.metadata.items() if k.upper().startswith("DURATION")), None)
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d)(?:\.(\d+))?", tag.strip()) if tag else None
    if m:
        hours, minutes, secs, frac = m.groups()
        whole = (int(hours) * 60 + int(minutes)) * 60 + int(secs)
        tagged = whole + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        return (tagged - start if 0 < start < tagged else tagged), True
    if c.duration:
        return Fraction(c.duration, av.time_base), not c.streams.audio
    return None, False


def _warn_if_cut_short(info: SourceInfo, last_time: Fraction | None, warn) -> None:
    """A file whose pictures end well before the time it states is damaged or cut off (a copy that
    did not finish): the output is only as long as what could be read, so say so."""
    if warn is None or last_time is None or not info.duration or not info.duration_is_video:
        return
    step = 1 / info.rate
    missing = info.start + info.duration - (last_time + step)
    if missing > max(Fraction(1), 2 * step):
        warn(
            f"{info.path}: pictures end at {float(last_time + step - info.start):.2f} s of the "
            f"{float(info.duration):.2f} s the file states; the rest could not be read "
            "(a damaged or unfinished file?)"
        )


def _bgr(frame: av.VideoFrame, fmt: str, colour: Colour) -> np.ndarray:
    """The host's exact conversion of a decoded picture to BGR (`fmt`: bgr24 or bgr48le)."""
    return frame.reformat(
        format=fmt,
        src_colorspace=sws_matrix(colour.matrix),
        src_color_range=colour.range,
        dst_color_range=2,
        interpolation=SWS_FLAGS,
    ).to_ndarray()


def frame_samples(frame: av.VideoFrame) -> np.ndarray:
    """A decoded picture's planes (a format of DEVICE_FORMATS) as one (rows, width) array of
    samples, luma first, each plane's rows without the decoder's padding (as Yuv420 holds them;
    PyAV's to_ndarray has no p010le, NVDEC's 10-bit output)."""
    lay = DEVICE_FORMATS[frame.format.name]
    item = np.dtype(lay.dtype).itemsize
    parts = []
    for plane, (rows, n) in zip(frame.planes, plane_rows(lay, frame.width, frame.height)):
        a = np.frombuffer(plane, lay.dtype).reshape(rows, plane.line_size // item)
        parts.append(a[:, :n].reshape(-1))
    return np.concatenate(parts).reshape(-1, frame.width)


def _as_planes(frame: SourceFrame, colour: Colour, samples=None) -> SourceFrame:
    """The frame's picture as YUV planes (its `samples` where they are already on the engine's
    GPU), and its scene thumbnail from a small BGR picture that swscale averages down directly
    (0.2 ms at 1080p; the full conversion it saves is 16 ms)."""
    pic = frame.original
    name = pic.format.name
    frame.planes = Yuv420(
        frame_samples(pic) if samples is None else samples,
        pic.height,
        pic.width,
        colour.matrix,
        colour.range == 2 or full_range_format(name),
        DEVICE_FORMATS[name].interleaved,
        pix_fmt=name,
    )
    small = pic.reformat(
        width=THUMB_SOURCE,
        height=THUMB_SOURCE,
        format="bgr24",
        src_colorspace=sws_matrix(colour.matrix),
        src_color_range=colour.range,
        dst_color_range=2,
        interpolation=Interpolation.AREA,
    )
    frame.thumb = scenes.thumbnail(small.to_ndarray())
    return frame


def _on_host(pic: Yuv420, frame: av.VideoFrame) -> Yuv420:
    """A picture whose samples are on the GPU, with its host copy's samples instead."""
    return replace(pic, data=frame_samples(frame))


def _settled(frames, kept: nvdec.DevicePictures, size: tuple[int, int]):
    """Pictures NVDEC left on the GPU that the engine will not take from there (another size,
    which the host fits; a format PyAV does not export; the device's way given up) brought down
    to host memory; the others as they are."""
    for frame in frames:
        if nvdec.on_gpu(frame) and not kept.keeps(frame, size):
            frame = nvdec.download(frame)
        yield frame


# Pictures over which an AVI's stamps are put back in order (B-frames in AVI: two or three).
AVI_REORDER = 8


def _stamps_in_order(frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    """AVI stores no presentation times: FFmpeg stamps each packet from its place in the file,
    and with B-frames the decoder hands the pictures out in their order but with those stamps
    (11, 13, 14, 12, 15, ...): each picture takes the smallest stamp among those of the next
    AVI_REORDER pictures, which gives the stamps back in order (gaps of null frames kept)."""
    held: deque = deque()  # pictures waiting for their stamp, in order
    stamps: list[int] = []  # the stamps they came with, a heap
    for frame in frames:
        held.append(frame)
        if frame.pts is not None:
            heapq.heappush(stamps, frame.pts)
        if len(held) > AVI_REORDER:
            yield _restamped(held.popleft(), stamps)
    while held:
        yield _restamped(held.popleft(), stamps)


def _restamped(frame: av.VideoFrame, stamps: list[int]) -> av.VideoFrame:
    if frame.pts is not None and stamps:
        frame.pts = heapq.heappop(stamps)
    return frame


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


def _whole_tail(frames, info: SourceInfo, warn, stats: dict) -> Iterator[av.VideoFrame]:
    """The decoded frames less incomplete ones at the very end: the last packet of a file still
    being written (or cut off) is half there, and FFmpeg hands it on as it is (MPEG-TS unflagged,
    its picture marked corrupt; fragmented MP4 flagged). Inside the stream a damaged picture is
    kept as FFmpeg concealed it (nothing else can stand in for it). FFmpeg marks the picture of a
    packet the demuxer flags corrupt as corrupt too."""
    held: list = []
    for frame in frames:
        if frame.is_corrupt:
            held.append(frame)
            continue
        yield from held
        held.clear()
        yield frame
    if held:
        stats["incomplete"] = len(held)
        if warn:
            warn(
                f"{info.path}: the last {len(held)} picture(s) are incomplete (a file still being "
                "written, or cut off); left out"
            )


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
