"""YUV pictures to the networks' BGR input and made BGR frames back to the encoder's YUV planes,
on the device (torch) instead of on the host.

On a GPU the host's exact conversions (swscale with accurate rounding and full chroma
interpolation) are what limit the pipeline: measured on the project's CPU at 1920x1080, 16 ms a
frame to BGR in the reader and 13.8 ms a frame back to YUV in the writer. Uploading the decoded
planes (half the bytes of BGR at 4:2:0) and downloading the encoder's planes instead takes that
off the host. The arithmetic is swscale's: ITU-R BT.601/709/2020 matrices, limited or full range,
8 or 10 bits; on the way in the chroma planes are upsampled by its cubic filter at the stream's
chroma siting and values rounded to the levels a decoded BGR frame has (8 bits, or 16 above 8);
on the way out the frame is rounded to those levels first (as the BGR path hands the encoder) and
the chroma is downsampled by the same cubic stretched to twice its width, centred between the
luma samples, which is where swscale puts chroma it makes from RGB. Pass-through frames never go
through here: they are encoded from the decoded picture itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

# PyTorch is imported by the functions that need it: the reader imports this module, and a CPU
# run imports PyTorch only after it has set the host memory up (rife_cli.engine.hostmem).
if TYPE_CHECKING:
    import torch

# Luma weights (Kr, Kb) by FFmpeg's colour-space enum; others are taken as BT.601.
_KR_KB = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG
    6: (0.299, 0.114),  # SMPTE 170M
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant
    10: (0.2627, 0.0593),  # BT.2020 constant (taken as non-constant)
}


@dataclass(frozen=True)
class Layout:
    """How a YUV pixel format lays its samples out."""

    bits: int  # significant bits per sample
    interleaved: bool  # chroma as U,V pairs in one plane (nv12, p010le)
    sub_x: int  # log2 of the horizontal chroma subsampling (1: half the columns)
    sub_y: int  # log2 of the vertical one
    msb: bool = False  # the bits in the top of 16 (p010le)

    @property
    def dtype(self):
        return np.uint8 if self.bits == 8 else np.uint16


# Pixel formats converted on the device, both ways: 4:2:0, 4:2:2 and 4:4:4, 8 and 10 bits (each
# compared with swscale in tests/test_colour.py). Others take the host's conversion.
LAYOUTS = {
    "yuv420p": Layout(8, False, 1, 1),
    "yuvj420p": Layout(8, False, 1, 1),
    "nv12": Layout(8, True, 1, 1),
    "yuv422p": Layout(8, False, 1, 0),
    "yuvj422p": Layout(8, False, 1, 0),
    "yuv444p": Layout(8, False, 0, 0),
    "yuvj444p": Layout(8, False, 0, 0),
    "yuv420p10le": Layout(10, False, 1, 1),
    "p010le": Layout(10, True, 1, 1, msb=True),
    "yuv422p10le": Layout(10, False, 1, 0),
    "yuv444p10le": Layout(10, False, 0, 0),
}
FORMATS = LAYOUTS  # decoded formats whose planes the device converts


def full_range_format(pix_fmt: str) -> bool:
    return pix_fmt.startswith("yuvj")


@dataclass
class Yuv420:
    """One decoded picture's planes (any format of LAYOUTS; the name is the common case's): a
    (rows, width) array of samples, luma's `height` rows first, then the chroma planes' samples in
    PyAV's order (U then V, or interleaved pairs), as contiguous samples."""

    data: np.ndarray
    height: int
    width: int
    matrix: int  # FFmpeg colour-space enum
    full_range: bool
    interleaved: bool
    # Chroma columns on the even luma columns (H.264/HEVC/MPEG-2 "left", the usual case) or
    # midway between them ("center", and what FFmpeg assumes when a stream does not say).
    cosited: bool = True
    pix_fmt: str = ""  # "" for 8-bit 4:2:0 (yuv420p, or nv12 when interleaved)

    @property
    def layout(self) -> Layout:
        if self.pix_fmt:
            return LAYOUTS[self.pix_fmt]
        return LAYOUTS["nv12" if self.interleaved else "yuv420p"]

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    @property
    def luma_scale(self) -> float:
        """Factor from this picture's luma samples to full-range 8-bit levels."""
        lay = self.layout
        scale = 1.0 / (1 << (lay.bits - 8 + (6 if lay.msb else 0)))
        return scale if self.full_range else scale * 255 / 219


YuvPicture = Yuv420


@dataclass(frozen=True)
class PlaneFormat:
    """What made frames are converted to on the device: the encoder's pixel format, the output's
    matrix and range, and the levels the BGR path would have rounded the frame to first (255 for
    8-bit sources, 65535 above)."""

    pix_fmt: str
    matrix: int
    full_range: bool
    levels: int = 255

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.pix_fmt]


@dataclass
class Planes:
    """A made frame as the encoder's planes, downloaded: `data` is (rows, width) samples laid out
    as in Yuv420. The writer builds the encoder's frame from it without swscale."""

    data: np.ndarray
    pix_fmt: str
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def plane_rows(layout: Layout, width: int, height: int) -> list[tuple[int, int]]:
    """(rows, samples per row) of each plane of a picture in this layout."""
    cw, ch = width >> layout.sub_x, height >> layout.sub_y
    if layout.interleaved:
        return [(height, width), (ch, 2 * cw)]
    return [(height, width), (ch, cw), (ch, cw)]


def _keys(t: float, a: float = -0.6) -> float:
    """Keys' cubic convolution kernel; a = -0.6 is what swscale's bicubic filter uses."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _taps(frac: float) -> list[float]:
    """Weights of the samples at -1, 0, +1, +2 for a point `frac` past sample 0."""
    return [_keys(frac + 1), _keys(frac), _keys(1 - frac), _keys(2 - frac)]


# Halving: output j sits midway between inputs 2j and 2j + 1; the kernel stretched to twice its
# width reaches inputs 2j - 3 .. 2j + 4 (distances 3.5 .. 0.5 .. 3.5), weights summing to 1.
_HALVE = [_keys(d / 2) / 2 for d in (3.5, 2.5, 1.5, 0.5, 0.5, 1.5, 2.5, 3.5)]


def _filter(p: torch.Tensor, start: int, n: int, weights: list[float]) -> torch.Tensor:
    """Sum of weights[i] * p[..., start + i : start + i + n] along the last axis."""
    return sum(w * p[..., start + i : start + i + n] for i, w in enumerate(weights))


def _pad(x: torch.Tensor, k: int) -> torch.Tensor:
    """x with its last axis' edge samples repeated k times on each side."""
    import torch.nn.functional as F

    flat = x.reshape(-1, 1, x.shape[-1])
    return F.pad(flat, (k, k), mode="replicate").reshape(*x.shape[:-1], x.shape[-1] + 2 * k)


def _double(x: torch.Tensor, cosited: bool) -> torch.Tensor:
    """Twice the samples along the last axis. Co-sited: samples on the even outputs, the odd ones
    halfway between. Centred: samples midway between outputs, so output 2j sits 3/4 past sample
    j - 1 and output 2j + 1 a quarter past sample j."""
    n = x.shape[-1]
    p = _pad(x, 2)
    out = x.new_empty(*x.shape[:-1], 2 * n)
    if cosited:
        out[..., 0::2] = x
        out[..., 1::2] = _filter(p, 1, n, _taps(0.5))
    else:
        out[..., 0::2] = _filter(p, 0, n, _taps(0.75))
        out[..., 1::2] = _filter(p, 1, n, _taps(0.25))
    return out


def _halve(x: torch.Tensor) -> torch.Tensor:
    """Half the samples along the last axis (even length), each centred between two inputs."""
    n = x.shape[-1] // 2
    p = _pad(x, 4)
    return sum(w * p[..., 1 + i : 1 + i + 2 * n : 2] for i, w in enumerate(_HALVE))


def upsample_chroma(
    uv: torch.Tensor, cosited: bool, sub_x: int = 1, sub_y: int = 1
) -> torch.Tensor:
    """[2, h >> sub_y, w >> sub_x] -> [2, h, w]: rows midway between luma rows, columns as
    `cosited` says. Cubic (Keys, a = -0.6) both ways, edges repeated: what swscale's exact
    conversion computes (decoded 720p and 1080p H.264 and a decoded FFV1 photo: 0.000-0.005 code
    values apart on average, at most 1 but for a few saturated pixels)."""
    if sub_x:
        uv = _double(uv, cosited)
    if sub_y:
        uv = _double(uv.transpose(-1, -2), cosited=False).transpose(-1, -2)
    return uv


def _weights(matrix: int) -> tuple[float, float, float]:
    kr, kb = _KR_KB.get(matrix, _KR_KB[5])
    return kr, 1.0 - kr - kb, kb


# swscale's white in 16-bit RGB (bgr48le), both ways: 0xff00, not 0xffff. The BGR path's 16-bit
# frames hold it, so the device's conversions do too (a made frame's 65535 is a bit over white).
WHITE16 = 65280.0


def _in_ranges(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma span, chroma centre, chroma span) in code values, decoding. Full range
    spans 255 << (bits - 8): swscale shifts 10-bit full-range samples up (1020 is white)."""
    s = float(1 << (bits - 8))
    if full:
        return 0.0, 255.0 * s, 128.0 * s, 255.0 * s
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


def _out_ranges(bits: int, full: bool) -> tuple[float, float, float, float]:
    """The same for encoding. Full range spans the whole code range, and its chroma centre is
    half a code value low: swscale's offset for it (measured against it; 128 gives +0.5 on
    every chroma sample)."""
    s = float(1 << (bits - 8))
    if full:
        top = float((1 << bits) - 1)
        return 0.0, top, 128.0 * s - 0.5, top
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


def _white(levels: int) -> float:
    return WHITE16 if levels > 255 else float(levels)


def yuv420_to_bgr(pic: Yuv420, data: torch.Tensor) -> torch.Tensor:
    """[1, 3, h, w] float BGR in [0, 1], rounded to the levels of a decoded BGR frame (8-bit, or
    16-bit above 8 bits), from `data`: pic.data as a tensor on the device that is to convert it."""
    import torch

    lay = pic.layout
    h, w = pic.height, pic.width
    flat = data.reshape(-1)
    if flat.dtype != torch.uint8:
        # 16-bit samples come as int16 (uint16's CUDA kernels are few): their bits, unsigned.
        flat = flat.to(torch.int32) & 0xFFFF
    if lay.msb:
        flat = flat >> 6
    (_, _), (ch, cw) = plane_rows(lay, w, h)[:2]
    if lay.interleaved:
        cw //= 2
        uv = flat[h * w : h * w + 2 * ch * cw].reshape(ch, cw, 2).permute(2, 0, 1)
    else:
        uv = flat[h * w : h * w + 2 * ch * cw].reshape(2, ch, cw)
    y = flat[: h * w].reshape(h, w).float()
    uv = upsample_chroma(uv.float(), pic.cosited, lay.sub_x, lay.sub_y)
    y0, ys, c0, cs = _in_ranges(lay.bits, pic.full_range)
    y, u, v = (y - y0) / ys, (uv[0] - c0) / cs, (uv[1] - c0) / cs
    kr, kg, kb = _weights(pic.matrix)
    r = y + 2.0 * (1.0 - kr) * v
    b = y + 2.0 * (1.0 - kb) * u
    g = (y - kr * r - kb * b) / kg
    bgr = torch.stack([b, g, r])[None]
    top = 255.0 if lay.bits == 8 else 65535.0
    return (bgr * _white(int(top))).clamp_(0.0, top).round_() / top


def bgr_to_planes(x: torch.Tensor, fmt: PlaneFormat) -> torch.Tensor:
    """[N, 3, h, w] float BGR in [0, 1] -> [N, rows, w] samples of `fmt` (uint8; above 8 bits
    int16 holding the uint16 samples' bits, as uint16's CUDA kernels are few), laid out as
    Planes.data, on x's device. The frame is first rounded to fmt.levels, as
    the BGR path's frames are, then converted as swscale converts BGR to the encoder's format."""
    import torch

    lay = fmt.layout
    n, w = x.shape[0], x.shape[-1]
    top = float(fmt.levels)
    x = (x.float().clamp(0.0, 1.0) * top).round_() / _white(fmt.levels)
    b, g, r = x[:, 0], x[:, 1], x[:, 2]
    kr, kg, kb = _weights(fmt.matrix)
    y = kr * r + kg * g + kb * b
    uv = torch.stack([(b - y) / (2.0 * (1.0 - kb)), (r - y) / (2.0 * (1.0 - kr))], 1)
    if lay.sub_x:
        uv = _halve(uv)
    if lay.sub_y:
        uv = _halve(uv.transpose(-1, -2)).transpose(-1, -2)
    y0, ys, c0, cs = _out_ranges(lay.bits, fmt.full_range)
    peak = float((1 << lay.bits) - 1)
    y = (y * ys + y0).round_().clamp_(0.0, peak)
    uv = (uv * cs + c0).round_().clamp_(0.0, peak)
    if lay.interleaved:
        chroma = uv.permute(0, 2, 3, 1).reshape(n, -1)
    else:
        chroma = uv.reshape(n, -1)
    out = torch.cat([y.reshape(n, -1), chroma], 1)
    if lay.bits == 8:
        return out.to(torch.uint8).reshape(n, -1, w)
    out = out.to(torch.int32)
    if lay.msb:
        out = out << 6
    out = torch.where(out >= 32768, out - 65536, out)  # the same 16 bits, as int16
    return out.to(torch.int16).reshape(n, -1, w)


def chroma_cosited(pic: Yuv420, host_bgr: np.ndarray) -> bool:
    """Whether a stream's chroma columns are co-sited, judged from one of its pictures and the
    host's exact conversion of it (swscale follows the stream's siting, which PyAV does not
    report): the siting whose device conversion comes closer. Always true without horizontal
    subsampling (4:4:4), where it does not matter."""
    import torch

    if not pic.layout.sub_x:
        return True
    top = 255.0 if pic.layout.bits == 8 else 65535.0
    errors = []
    for cosited in (True, False):
        trial = replace(pic, cosited=cosited)
        got = yuv420_to_bgr(trial, torch.from_numpy(pic.data))[0].permute(1, 2, 0).numpy() * top
        errors.append(float(np.abs(got - host_bgr).mean()))
    return errors[0] <= errors[1]
