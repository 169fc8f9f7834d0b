"""YUV 4:2:0 pictures to the networks' BGR input on the device (torch), instead of on the host.

On a GPU the host's exact conversion (swscale with accurate rounding and full chroma
interpolation) is what limits the pipeline: measured on the project's CPU at 1920x1080, 16 ms a
frame in the reader thread, which then delivers about 50 source frames/s. Uploading the 8-bit
planes instead (half the bytes of BGR) and converting where the network runs takes that off the
host. The arithmetic is swscale's: ITU-R BT.601/709/2020 matrices, limited or full range, the
chroma planes upsampled by its cubic filter at the stream's chroma siting; values are rounded to
8-bit levels as a decoded BGR frame would be. Pass-through frames never go through here: they are encoded from the decoded
picture itself.
"""

from __future__ import annotations

from dataclasses import dataclass
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
# Decoded formats whose 8-bit planes the device converts: (name, chroma interleaved).
FORMATS = {"yuv420p": False, "yuvj420p": False, "nv12": True}


@dataclass
class Yuv420:
    """One decoded 8-bit 4:2:0 picture as PyAV lays it out (to_ndarray): h * 3/2 rows of w
    bytes, Y first, then U and V planes (yuv420p) or interleaved UV rows (nv12)."""

    data: np.ndarray
    height: int
    width: int
    matrix: int  # FFmpeg colour-space enum
    full_range: bool
    interleaved: bool
    # Chroma columns on the even luma columns (H.264/HEVC/MPEG-2 "left", the usual case) or
    # midway between them ("center", and what FFmpeg assumes when a stream does not say).
    cosited: bool = True

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


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


def _filter(p: torch.Tensor, start: int, n: int, weights: list[float]) -> torch.Tensor:
    """Sum of weights[i] * p[..., start + i : start + i + n] along the last axis."""
    return sum(w * p[..., start + i : start + i + n] for i, w in enumerate(weights))


def _double(x: torch.Tensor, cosited: bool) -> torch.Tensor:
    """Twice the samples along the last axis. Co-sited: samples on the even outputs, the odd ones
    halfway between. Centred: samples midway between outputs, so output 2j sits 3/4 past sample
    j - 1 and output 2j + 1 a quarter past sample j."""
    import torch.nn.functional as F

    n = x.shape[-1]
    p = F.pad(x[None], (2, 2, 0, 0), mode="replicate")[0]
    out = x.new_empty(*x.shape[:-1], 2 * n)
    if cosited:
        out[..., 0::2] = x
        out[..., 1::2] = _filter(p, 1, n, _taps(0.5))
    else:
        out[..., 0::2] = _filter(p, 0, n, _taps(0.75))
        out[..., 1::2] = _filter(p, 1, n, _taps(0.25))
    return out


def upsample_chroma(uv: torch.Tensor, cosited: bool) -> torch.Tensor:
    """[2, h/2, w/2] -> [2, h, w]: rows midway between luma rows, columns as `cosited` says.
    Cubic (Keys, a = -0.6) both ways, edges repeated: what swscale's exact conversion computes
    (decoded 720p and 1080p H.264 and a decoded FFV1 photo: 0.000-0.005 code values apart on
    average, at most 1 but for a few saturated pixels)."""
    cols = _double(uv, cosited)
    return _double(cols.transpose(-1, -2), cosited=False).transpose(-1, -2)


def yuv420_to_bgr(pic: Yuv420, data: torch.Tensor) -> torch.Tensor:
    """[1, 3, h, w] float BGR in [0, 1], rounded to 8-bit levels, from `data`: pic.data as a
    tensor on the device that is to convert it."""
    import torch

    h, w = pic.height, pic.width
    y = data[:h].float()
    ch, cw = h // 2, w // 2
    if pic.interleaved:
        uv = data[h : h + ch].reshape(ch, cw, 2).permute(2, 0, 1).float()
    else:
        uv = data[h:].reshape(2, ch, cw).float()
    uv = upsample_chroma(uv, pic.cosited)
    u, v = uv[0], uv[1]
    if pic.full_range:
        y, u, v = y / 255.0, (u - 128.0) / 255.0, (v - 128.0) / 255.0
    else:
        y, u, v = (y - 16.0) / 219.0, (u - 128.0) / 224.0, (v - 128.0) / 224.0
    kr, kb = _KR_KB.get(pic.matrix, _KR_KB[5])
    kg = 1.0 - kr - kb
    r = y + 2.0 * (1.0 - kr) * v
    b = y + 2.0 * (1.0 - kb) * u
    g = (y - kr * r - kb * b) / kg
    bgr = torch.stack([b, g, r])[None]
    return (bgr * 255.0).clamp_(0.0, 255.0).round_() / 255.0


def chroma_cosited(pic: Yuv420, host_bgr: np.ndarray) -> bool:
    """Whether a stream's chroma columns are co-sited, judged from one of its pictures and the
    host's exact conversion of it (swscale follows the stream's siting, which PyAV does not
    report): the siting whose device conversion comes closer."""
    import torch

    errors = []
    for cosited in (True, False):
        trial = Yuv420(**{**pic.__dict__, "cosited": cosited})
        got = yuv420_to_bgr(trial, torch.from_numpy(pic.data))[0].permute(1, 2, 0).numpy() * 255
        errors.append(float(np.abs(got - host_bgr).mean()))
    return errors[0] <= errors[1]
