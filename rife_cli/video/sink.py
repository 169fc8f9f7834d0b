"""Writing frames: a video stream encoded with PyAV, or a numbered PNG sequence."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError, UsageError

# SVT-AV1 writes a banner per encoder to stderr unless told to report errors only.
os.environ.setdefault("SVT_LOG", "1")
from .hdr import HDR_ENCODERS, Hdr10, encoder_params
from .images import write_image
from .source import SWS_FLAGS, Colour, sws_matrix

CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
# What -o - writes (video.pipes.PIPE_FORMATS); as files too, though no default output is named so.
CONTAINERS.update({".nut": "nut", ".mpegts": "mpegts", ".y4m": "yuv4mpegpipe"})
TEN_BIT = {
    "libx264": "yuv420p10le",
    "libx265": "yuv420p10le",
    "libsvtav1": "yuv420p10le",
    "hevc_nvenc": "p010le",
    "av1_nvenc": "p010le",
    "ffv1": "yuv420p10le",
    "prores_ks": "yuv422p10le",
    "libvpx-vp9": "yuv420p10le",
}
EIGHT_BIT = {
    "prores_ks": "yuv422p10le",
    "h264_nvenc": "yuv420p",
    "hevc_nvenc": "yuv420p",
    "av1_nvenc": "yuv420p",
}


DEFAULT_CODEC = {
    "webm": "libsvtav1",
    "yuv4mpegpipe": "wrapped_avframe",
}  # else libx264; libx265 for HDR sources (see hdr.py)


@dataclass
class EncodeOptions:
    codec: str | None = None  # None: libx264, or what the container needs (see DEFAULT_CODEC)
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    hdr: Hdr10 | None = None  # HDR10 metadata to write (libx265, libsvtav1)


def container_of(path: Path) -> str | None:
    return CONTAINERS.get(path.suffix.lower())


def supported_codecs(fmt: str) -> set[str]:
    """Codec names FFmpeg's muxer for `fmt` accepts (asked of FFmpeg, not kept in a table)."""
    if fmt == "mpegts":
        # Its muxer keeps no codec table, so FFmpeg answers only its defaults (MPEG-2, MP2); what
        # it takes shows when the header is written (prepare_encoding's check, the mux's).
        return set(av.codecs_available)
    with av.open("/dev/null", "w", format=fmt) as c:
        return set(c.supported_codecs)


def prepare_encoding(
    path: Path,
    opts: EncodeOptions,
    width: int,
    height: int,
    rate: Fraction,
    bits: int,
    hdr: bool = False,
) -> EncodeOptions:
    """Before any work: the options with codec and pixel format filled in, checked against this
    FFmpeg, the container and the frame size, and the encoder opened once to prove it starts.
    An HDR source (`hdr`) gets an encoder that can say so (HEVC; AV1 in WebM)."""
    fallback = "libx265" if hdr and bits > 8 else "libx264"
    codec = opts.codec or DEFAULT_CODEC.get(container_of(path), fallback)
    opts = replace(opts, codec=codec, pix_fmt=opts.pix_fmt or default_pix_fmt(codec, bits))
    _check_codec(path, opts)
    _check_frame_size(width, height, opts.pix_fmt)
    try:
        # Opens the encoder as the run will (SVT-AV1 at 4K takes a while to): once, when it works.
        _check_header(path, width, height, rate, opts)
    except UsageError:
        _check_encoder_opens(width, height, rate, opts)  # the encoder itself: say why
        raise
    return opts


def _check_header(path: Path, width: int, height: int, rate: Fraction, opts: EncodeOptions) -> None:
    """The container writes a header for this stream: FFmpeg lists some codecs for a muxer that
    then has no tag for them (AV1 and VP9 in .mov)."""
    try:
        with av.open(io.BytesIO(), "w", format=container_of(path)) as c:
            s = c.add_stream(opts.codec, rate=rate)
            s.width, s.height, s.pix_fmt = width, height, opts.pix_fmt
            s.codec_context.options = encoder_options(opts)
            c.start_encoding()
    except (av.FFmpegError, ValueError, OSError):
        raise UsageError(
            f"--codec {opts.codec} cannot go into {path.suffix}; use .mkv or another codec"
        ) from None


def _check_codec(path: Path, opts: EncodeOptions) -> None:
    """The codec exists in this FFmpeg and the container can hold it; the pixel format exists."""
    if opts.codec not in av.codecs_available:
        raise UsageError(f"--codec {opts.codec}: this FFmpeg has no such encoder")
    try:
        av.codec.Codec(opts.codec, "w")
    except (av.FFmpegError, ValueError):
        raise UsageError(f"--codec {opts.codec}: not an encoder in this FFmpeg") from None
    fmt = container_of(path)
    if fmt is None:
        raise UsageError(
            f"-o {path}: unknown container {path.suffix!r}; use .mp4, .mkv, .mov or .webm"
        )
    if opts.codec not in supported_codecs(fmt):
        raise UsageError(
            f"--codec {opts.codec} cannot go into {path.suffix}; use .mkv or another codec"
        )
    try:
        av.VideoFormat(opts.pix_fmt)
    except (ValueError, av.FFmpegError):
        raise UsageError(f"--pix-fmt {opts.pix_fmt}: unknown pixel format") from None


def _check_frame_size(width: int, height: int, pix_fmt: str) -> None:
    """Subsampled chroma (4:2:0, 4:2:2) needs even sizes."""
    fmt = av.VideoFormat(pix_fmt, width, height)
    chroma = fmt.components[1] if len(fmt.components) > 1 else None
    odd_w = width % 2 and chroma is not None and chroma.width < fmt.components[0].width
    odd_h = height % 2 and chroma is not None and chroma.height < fmt.components[0].height
    if odd_w or odd_h:
        raise UsageError(
            f"{width}x{height} has an odd size, which {pix_fmt} cannot hold; use --pix-fmt yuv444p, "
            "or --png"
        )


def default_pix_fmt(codec: str, bits: int) -> str:
    if bits > 8:
        return TEN_BIT.get(codec, "yuv420p10le")
    return EIGHT_BIT.get(codec, "yuv420p")


def encoder_options(opts: EncodeOptions) -> dict[str, str]:
    options = {}
    if opts.crf is not None:
        options["cq" if opts.codec.endswith("nvenc") else "crf"] = str(opts.crf)
    if opts.preset:
        options["preset"] = opts.preset
    if opts.codec == "libx264":
        options.setdefault("preset", "fast")
    if opts.codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints its banner to stderr otherwise
    if opts.hdr is not None and opts.codec in HDR_ENCODERS:
        key = HDR_ENCODERS[opts.codec]
        params = [p for p in (options.get(key), encoder_params(opts.codec, opts.hdr)) if p]
        options[key] = ":".join(params)
    return options


def _check_encoder_opens(width: int, height: int, rate: Fraction, opts: EncodeOptions) -> None:
    """A missing GPU for NVENC, a bad preset or CRF, or a pixel format the encoder refuses all
    show up when it is opened with the real settings."""
    pix_fmt = opts.pix_fmt
    try:
        cc = av.CodecContext.create(opts.codec, "w")
        cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
        cc.time_base, cc.framerate = 1 / rate, rate
        cc.options = encoder_options(opts)
        cc.open()
    except (av.FFmpegError, ValueError, OSError) as exc:
        hint = " (no NVIDIA GPU or driver here?)" if "nvenc" in opts.codec else ""
        raise UsageError(
            f"--codec {opts.codec} cannot start with {pix_fmt} {width}x{height}"
            f"{' and the given --crf/--preset' if opts.crf is not None or opts.preset else ''}{hint}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None


class VideoSink:
    """One video stream into a file (no audio: that is muxed afterwards by stream copy)."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        rate: Fraction,
        colour: Colour,
        bits: int,
        opts: EncodeOptions,
        fmt: str = "matroska",
        sar: Fraction | None = None,
    ):
        self.path = path
        self.colour = colour
        self.pix_fmt = opts.pix_fmt or default_pix_fmt(opts.codec, bits)
        try:
            # The final container's own format: Matroska would round an MP4's exact 1001 rates to ms.
            self.container = av.open(str(path), "w", format=fmt)
            s = self.container.add_stream(opts.codec, rate=rate)
            s.width, s.height = width, height
            s.pix_fmt = self.pix_fmt
            s.time_base = self.time_base = 1 / rate
            cc = s.codec_context
            cc.colorspace, cc.color_range = colour.matrix, colour.range
            cc.color_primaries, cc.color_trc = colour.primaries, colour.transfer
            if sar is not None:
                cc.sample_aspect_ratio = sar  # anamorphic pictures stay as wide as they were
            cc.options = encoder_options(opts)
            self.stream = s
        except (av.FFmpegError, ValueError) as exc:
            self._abort()
            raise OutputError(f"{path}: cannot open the {opts.codec} encoder ({exc})") from None
        self.count = 0

    def _abort(self):
        c = getattr(self, "container", None)
        if c is not None:
            try:
                c.close()
            except av.FFmpegError:
                pass

    def _convert(self, frame: av.VideoFrame, from_rgb: bool) -> av.VideoFrame:
        m = sws_matrix(self.colour.matrix)
        return frame.reformat(
            format=self.pix_fmt,
            src_colorspace=m,
            dst_colorspace=m,
            src_color_range=2 if from_rgb else self.colour.range,
            dst_color_range=self.colour.range,
            interpolation=SWS_FLAGS,
        )

    def write(self, index: int, image: np.ndarray | None, original: av.VideoFrame | None) -> None:
        """Frame `index` from a BGR array, or a decoded source frame passed through untouched."""
        if original is not None:
            frame = (
                original if original.format.name == self.pix_fmt else self._convert(original, False)
            )
        else:
            fmt = "bgr48le" if image.dtype == np.uint16 else "bgr24"
            frame = self._convert(av.VideoFrame.from_ndarray(image, format=fmt), True)
        frame.pts = index
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.color_range = self.colour.range
        self._mux(self.stream.encode(frame))
        self.count += 1

    def _mux(self, packets):
        try:
            self.container.mux(packets)
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._mux(self.stream.encode(None))
        try:
            self.container.close()  # writes the trailer: a full disk can show up only here
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed ({exc.strerror or exc})") from None

    def abort(self) -> None:
        self._abort()


class ImageSink:
    """A numbered PNG sequence written into a temporary directory, renamed as a whole at the end."""

    def __init__(self, folder: Path, bits: int):
        self.folder = folder
        self.sixteen = bits > 8
        self.count = 0
        folder.mkdir(parents=True)

    def write(self, index: int, image: np.ndarray, original=None) -> None:
        if self.sixteen and image.dtype == np.uint8:
            image = image.astype(np.uint16) * 257
        write_image(self.folder / f"{index:08d}.png", image)
        self.count += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def files(self) -> list[Path]:
        return sorted(self.folder.iterdir())
