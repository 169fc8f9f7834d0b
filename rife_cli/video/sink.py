"""Writing frames: a video stream encoded with PyAV, or a numbered PNG sequence."""

from __future__ import annotations

import io
import os
import re
import shutil
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError, UsageError

# SVT-AV1 writes a banner per encoder to stderr unless told to report errors only.
os.environ.setdefault("SVT_LOG", "1")
from ..engine.colour import LAYOUTS, Planes, plane_rows
from .hdr import HDR_ENCODERS, Hdr10, encoder_params
from .images import write_image
from .source import SWS_FLAGS, Colour, sws_matrix

CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
# Chroma formats by how much chroma they keep: 4:2:0, 4:2:2, 4:4:4 (log2 of the subsampling).
CHROMA = {(1, 1): 0, (1, 0): 1, (0, 0): 2}
CHROMA_NAMES = ("4:2:0", "4:2:2", "4:4:4")
# What -o - writes (video.pipes.PIPE_FORMATS); as files too, though no default output is named so.
CONTAINERS.update({".nut": "nut", ".mpegts": "mpegts", ".y4m": "yuv4mpegpipe"})


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
    # The picture size the encoder is given (filled in by prepare_encoding): the source's, less a
    # pixel where its chroma format needs even sizes.
    frame_size: tuple[int, int] | None = None
    gpu: int | None = None  # NVENC: the CUDA device to encode on (a --devices worker's own)


def container_of(path: Path) -> str | None:
    return CONTAINERS.get(path.suffix.lower())


def suffix_of(fmt: str) -> str:
    """The file extension a muxer's files have, for messages: ".mkv" for "matroska"."""
    return next((ext for ext, name in CONTAINERS.items() if name == fmt), f".{fmt}")


# Containers that cannot store a negative time move a stream written alone so that its first
# decoding time is 0: an x264 segment's B-frame delay (dts -2 frames) then starts its video 2
# frames late, and the join moves everything again for the audio's priming, so the audio played
# 61 ms early at 50 fps. Their segments are made in Matroska, which keeps the times as encoded;
# the join writes the final container with every stream moved alike.
SEGMENT_CONTAINERS = {"nut": "matroska", "mpegts": "matroska"}


def muxer_options(fmt: str | None) -> dict[str, str]:
    """Y4M above 8 bits (C420p10 and the like, which x265 and FFmpeg read) is outside the
    format's first definition: FFmpeg's muxer writes it only when told that is wanted."""
    return {"strict": "-1"} if fmt == "yuv4mpegpipe" else {}


def segment_container(fmt: str | None) -> tuple[str | None, str | None]:
    """(FFmpeg's muxer, file extension) for the segments of an output in `fmt`; an extension of
    None keeps the output's own."""
    if fmt in SEGMENT_CONTAINERS:
        return SEGMENT_CONTAINERS[fmt], ".mkv"
    return fmt, None


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
    source_pix_fmt: str | None = None,
    warn=None,
    open_encoder: bool = True,
) -> EncodeOptions:
    """Before any work: the options with codec, pixel format and frame size filled in, checked
    against this FFmpeg, the container and the frame size, and the encoder opened once to prove
    it starts (unless not `open_encoder`: --ray opens it on a worker, whose GPU the head may
    lack). An HDR source (`hdr`) gets an encoder that can say so (HEVC; AV1 in WebM). The pixel
    format follows the source's (`source_pix_fmt`) where none is given; `warn` hears what the
    encoder could not hold."""
    fallback = "libx265" if hdr and bits > 8 else "libx264"
    codec = opts.codec or DEFAULT_CODEC.get(container_of(path), fallback)
    given = replace(opts, codec=codec)
    _check_codec(path, given)
    top = CRF_MAX.get(codec)
    if opts.crf is not None and top is not None and opts.crf > top:
        # the encoders clamp it silently (x264 takes 99 as 51)
        raise UsageError(f"--crf {opts.crf}: {codec} takes 0 to {top} (lower is better)")
    if opts.pix_fmt is None:
        # The notice names the encoder as the user knows it: chosen by --codec, or ours by default.
        who = f"--codec {codec}" if opts.codec else f"{codec} (the default encoder; see --codec)"
        given_pix = default_pix_fmt(codec, bits, source_pix_fmt, warn, who)
        opts = replace(given, pix_fmt=given_pix)
    else:
        opts = given
    _check_pix_fmt(opts.pix_fmt)
    size = _check_frame_size(width, height, opts.pix_fmt, warn)
    opts = replace(opts, frame_size=size)
    if not open_encoder:
        return opts
    try:
        # Opens the encoder as the run will (SVT-AV1 at 4K takes a while to): once, when it works.
        _check_header(path, *size, rate, opts)
    except UsageError:
        plain = default_pix_fmt(codec, bits)
        if given.pix_fmt is None and opts.pix_fmt != plain:
            # A format the encoder lists but this device refuses (NVENC's 4:2:2 and 10-bit H.264
            # on GPUs before Blackwell): the plain 4:2:0 one, said.
            try:
                done = prepare_encoding(path, replace(given, pix_fmt=plain), width, height, rate,
                                        bits, hdr, source_pix_fmt, warn)  # fmt: skip
            except UsageError:
                pass
            else:
                if warn is not None:
                    warn(f"--codec {codec} would not start with {opts.pix_fmt}; writing {plain}")
                return done
        _check_encoder_opens(*size, rate, opts)  # the encoder itself: say why
        raise
    return opts


def _check_header(path: Path, width: int, height: int, rate: Fraction, opts: EncodeOptions) -> None:
    """The container writes a header for this stream: FFmpeg lists some codecs for a muxer that
    then has no tag for them (AV1 and VP9 in .mov)."""
    fmt = container_of(path)
    try:
        with av.open(io.BytesIO(), "w", format=fmt, container_options=muxer_options(fmt)) as c:
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
    if fmt is None and path.is_dir():
        raise UsageError(
            f"-o {path}: a directory; end it with / for PNG frames there, or name a video file "
            "(.mp4, .mkv, .mov, .webm)"
        )
    if fmt is None:
        raise UsageError(
            f"-o {path}: unknown container {path.suffix!r}; use .mp4, .mkv, .mov or .webm"
        )
    if opts.codec not in supported_codecs(fmt):
        raise UsageError(
            f"--codec {opts.codec} cannot go into {path.suffix}; use .mkv or another codec"
        )


def _check_pix_fmt(pix_fmt: str) -> None:
    try:
        av.VideoFormat(pix_fmt)
    except (ValueError, av.FFmpegError):
        raise UsageError(f"--pix-fmt {pix_fmt}: unknown pixel format") from None


def _check_frame_size(width: int, height: int, pix_fmt: str, warn=None) -> tuple[int, int]:
    """The size the encoder is given: subsampled chroma (4:2:0, 4:2:2) needs even sizes, so an
    odd one loses its last column or row (one pixel, with a notice: never refused). Cropping
    rather than padding: a pixel of picture lost at the edge shows less than a line of black."""
    fmt = av.VideoFormat(pix_fmt, width, height)
    chroma = fmt.components[1] if len(fmt.components) > 1 else None
    odd_w = width % 2 and chroma is not None and chroma.width < fmt.components[0].width
    odd_h = height % 2 and chroma is not None and chroma.height < fmt.components[0].height
    if not (odd_w or odd_h):
        return width, height
    w, h = width - bool(odd_w), height - bool(odd_h)
    if w < 2 or h < 2:
        raise UsageError(f"{width}x{height} is too small for {pix_fmt}; use --png")
    if warn is not None:
        what = " and ".join(
            x for x, odd in (("the last column", odd_w), ("the last row", odd_h)) if odd
        )
        warn(
            f"{width}x{height} is odd, which {pix_fmt} cannot hold: {what} cropped ({w}x{h}); "
            "--pix-fmt yuv444p keeps every pixel"
        )
    return w, h


def _layout(pix_fmt: str) -> tuple[int, int] | None:
    """(chroma level, bits) of a YUV pixel format (level: CHROMA's), None for RGB, gray, alpha,
    palettes, full-range-only (yuvj) and odd subsamplings (4:1:1, 4:4:0)."""
    try:
        fmt = av.VideoFormat(pix_fmt, 64, 64)
    except (ValueError, av.FFmpegError):
        return None
    if fmt.is_rgb or fmt.has_palette or len(fmt.components) != 3 or pix_fmt.startswith("yuvj"):
        return None
    luma, cb = fmt.components[0], fmt.components[1]
    sub = ((luma.width // cb.width).bit_length() - 1, (luma.height // cb.height).bit_length() - 1)
    level = CHROMA.get(sub)
    return None if level is None else (level, luma.bits)


def default_pix_fmt(
    codec: str, bits: int, source: str | None = None, warn=None, who: str | None = None
) -> str:
    """The encoder's pixel format nearest the source's chroma format and depth (`source`, a YUV
    pixel format; otherwise 4:2:0 at `bits`): the same where the encoder holds it, else one that
    loses nothing (more chroma or bits), else the one that loses least, chroma before depth,
    said through `warn`. Planar formats before semi-planar ones (NV12) of the same layout."""
    # A full-range (yuvj) or alpha (yuva) source keeps its chroma format like its plain twin:
    # the range is written as a flag, the alpha is dropped (said where the source is read).
    plain = re.sub(r"^yuv[ja]", "yuv", source) if source else None
    want = _layout(plain) if plain else None
    keep = want or (0, min(bits, 16))
    try:
        offered = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    except (ValueError, av.FFmpegError):
        offered = []
    layouts = {name: lay for name in offered if (lay := _layout(name)) is not None}
    if not layouts:
        return "yuv420p10le" if bits > 8 else "yuv420p"  # let the encoder's own check say no

    def cost(name: str):
        level, depth = layouts[name]
        loss = (max(0, keep[0] - level), max(0, keep[1] - depth))
        gain = (max(0, level - keep[0]), max(0, depth - keep[1]))
        return (*loss, *gain, not name.startswith("yuv"), offered.index(name))

    best = min(layouts, key=cost)
    level, depth = layouts[best]
    if want is not None and warn is not None and (level < want[0] or depth < want[1]):
        warn(
            f"{who or '--codec ' + codec} cannot hold the source's {CHROMA_NAMES[want[0]]} {want[1]}-bit "
            f"({source}); writing {best} ({CHROMA_NAMES[level]} {depth}-bit), the nearest it holds"
        )
    return best


# The --crf scale's top per encoder (NVENC's cq included): above it, encoders clamp silently.
CRF_MAX = {
    "libx264": 51, "libx264rgb": 51, "libx265": 51, "libsvtav1": 63, "libvpx-vp9": 63,
    "libvpx": 63, "libaom-av1": 63, "h264_nvenc": 51, "hevc_nvenc": 51, "av1_nvenc": 51,
}  # fmt: skip
# NVENC's constant quality without --crf: the software encoders' default CRF for the same format
# (x264 23, x265 28, SVT-AV1 35), so that leaving --crf out means the same intent on either.
NVENC_CQ = {"h264_nvenc": 23, "hevc_nvenc": 28, "av1_nvenc": 35}
# NVIDIA data-centre GPUs without an NVENC engine (their NVDEC decodes; nothing encodes).
NVIDIA_NODE = Path("/dev/nvidiactl")  # the driver's control device: there with a driver
NO_NVENC = re.compile(r"\b(A100|A800|A30|H100|H800|H200|H20)\b")


def encoder_options(opts: EncodeOptions) -> dict[str, str]:
    options = {}
    if opts.codec.endswith("_nvenc"):
        # Constant quality: VBR with a quality target and no bitrate cap (b=0); FFmpeg's default
        # otherwise is a 2 Mbit/s average whatever the picture.
        options.update(rc="vbr", b="0")
        options["cq"] = str(opts.crf if opts.crf is not None else NVENC_CQ.get(opts.codec, 23))
        if opts.gpu is not None:
            options["gpu"] = str(opts.gpu)
    elif opts.crf is not None:
        options["crf"] = str(opts.crf)
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


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs' model names as the driver lists them (no PyTorch, no CUDA call)."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def _why_no_nvenc(codec: str) -> None:
    """An NVENC encoder that did not open, where the reason is known: one line that names a
    software encoder to use instead."""
    soft = {"hevc_nvenc": "libx265", "av1_nvenc": "libsvtav1"}.get(codec, "libx264")
    gpus = nvidia_gpus()
    if not gpus and not NVIDIA_NODE.exists():
        raise UsageError(f"--codec {codec}: no NVIDIA GPU or driver here; use --codec {soft}")
    lacking = [g for g in gpus if NO_NVENC.search(g)]
    if gpus and len(lacking) == len(gpus):
        raise UsageError(
            f"--codec {codec}: the {lacking[0]} has no NVENC video encoder (A100, H100 and H200 "
            f"have none); use a software encoder: --codec {soft}"
        )


def encoder_threads(cc) -> None:
    """An encoder's threads as the ffmpeg program sets them: as many as the box has cores (0:
    FFmpeg's choice), frame and slice threading both allowed. PyAV leaves slice threading only,
    which x264 then runs as sliced threads: fewer frames in flight, less throughput."""
    cc.thread_count = 0
    cc.thread_type = "AUTO"


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
        if "nvenc" in opts.codec:
            _why_no_nvenc(opts.codec)
        raise UsageError(
            f"--codec {opts.codec} cannot start with {pix_fmt} {width}x{height}"
            f"{' and the given --crf/--preset' if opts.crf is not None or opts.preset else ''}: "
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
            self.container = av.open(
                str(path), "w", format=fmt, container_options=muxer_options(fmt)
            )
            s = self.container.add_stream(opts.codec, rate=rate)
            s.width, s.height = width, height
            s.pix_fmt = self.pix_fmt
            s.time_base = self.time_base = 1 / rate
            cc = s.codec_context
            cc.colorspace, cc.color_range = colour.matrix, colour.range
            cc.color_primaries, cc.color_trc = colour.primaries, colour.transfer
            if sar is not None:
                cc.sample_aspect_ratio = sar  # anamorphic pictures stay as wide as they were
            encoder_threads(cc)
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

    def write(
        self, index: int, image: np.ndarray | Planes | None, original: av.VideoFrame | None
    ) -> None:
        """Frame `index` from a BGR array, from planes already in the encoder's pixel format
        (converted on the device: no swscale here), or a decoded source frame passed through
        untouched."""
        if original is not None:
            frame = (
                original if original.format.name == self.pix_fmt else self._convert(original, False)
            )
        elif isinstance(image, Planes):
            frame = frame_from_planes(image)
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


def frame_from_planes(planes: Planes) -> av.VideoFrame:
    """A frame for the encoder made from planes in its own pixel format: each plane's rows copied
    into the frame's (whose rows may be padded), nothing converted."""
    lay = LAYOUTS[planes.pix_fmt]
    item = np.dtype(lay.dtype).itemsize
    frame = av.VideoFrame(planes.width, planes.height, planes.pix_fmt)
    flat = planes.data.reshape(-1)
    at = 0
    for plane, (rows, n) in zip(frame.planes, plane_rows(lay, planes.width, planes.height)):
        dst = np.frombuffer(plane, lay.dtype).reshape(rows, plane.line_size // item)
        dst[:, :n] = flat[at : at + rows * n].reshape(rows, n)
        at += rows * n
    return frame


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
