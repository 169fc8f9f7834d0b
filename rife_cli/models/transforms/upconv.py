"""The networks' 4x4 stride-2 transposed convolution, computed as one ordinary 2x2 convolution.

Output pixel (2m + py, 2k + px) of ConvTranspose2d(kernel 4, stride 2, padding 1) sums a 2x2 input
window: rows (m - 1, m) with kernel rows (3, 1) when py = 0, rows (m, m + 1) with kernel rows (2, 0)
when py = 1; columns likewise. A 2x2 convolution with padding 1 visits exactly those windows (its
output row r covers input rows r - 1 and r), so one convolution with 4 x out_channels filters makes
all four output phases, and four strided copies interleave them. Same multiply-adds as the
transposed convolution, but oneDNN runs it at its ordinary-convolution speed: measured on this
project's 2-core CPU, a 720p v3.6 pair went from 1.78 to 1.71 s, mostly from the 45 -> 4 and 45 -> 1
layers whose transposed form ran at a fraction of the convolution rate.

Only channels-last inputs take this path (our default layout); contiguous NCHW inputs keep the
native operator, which is what the reference-like benchmark baseline runs.
"""

from __future__ import annotations

import cv2
import torch
import torch.nn.functional as F
from torch import nn

# Kernel rows (or columns) of the 4x4 kernel that output phase 0 / 1 uses, for 2x2 taps 0 and 1.
_TAPS = ((3, 1), (2, 0))
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """[in, out, 4, 4] transposed-convolution weight -> [4 * out, in, 2, 2], phase-major
    (py, px) = (0, 0), (0, 1), (1, 0), (1, 1)."""
    parts = []
    for py, px in PHASES:
        k = weight[:, :, list(_TAPS[py])][:, :, :, list(_TAPS[px])]
        parts.append(k.transpose(0, 1))
    return torch.cat(parts, 0)


def phase_weight_3x3(weight: torch.Tensor) -> torch.Tensor:
    """The same four phases as one 3x3 convolution with padding 1 and no offset: output row m of
    phase py covers input rows m - 1 + py and m + py, i.e. 3x3 rows py and py + 1 (columns
    likewise). For 3x3 fast paths (Winograd); the extra taps are zeros."""
    w2 = phase_weight(weight)
    out = w2.shape[0] // 4
    w3 = w2.new_zeros(w2.shape[0], w2.shape[1], 3, 3)
    for i, (py, px) in enumerate(PHASES):
        w3[i * out : (i + 1) * out, :, py : py + 2, px : px + 2] = w2[i * out : (i + 1) * out]
    return w3


def interleave_phases(y: torch.Tensor) -> torch.Tensor:
    """[n, 4 * c, h, w] phase-major (as phase_weight_3x3 makes them) -> [n, c, 2h, 2w] output of
    the transposed convolution, channels-last."""
    n, c4, h, w = y.shape
    c = c4 // 4
    out = torch.empty(
        (n, c, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last
    )
    dst = out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c)
    if y.device.type != "cpu" or y.dtype != torch.float32 or not y.is_contiguous():
        dst.copy_(y.view(n, 2, 2, c, h, w).permute(0, 4, 1, 5, 2, 3))
        return out
    # Channels to the innermost place first, by OpenCV's blocked transpose, then runs of c
    # values: measured on the 2-core CPU, one thread, 180 x 184 x 320: 10.6 ms against 20.7 ms
    # for the single gathering copy above, whose every value comes from another channel plane.
    for i in range(n):
        hwc = torch.from_numpy(cv2.transpose(y[i].numpy().reshape(c4, h * w)))
        dst[i].copy_(hwc.view(h, w, 2, 2, c).permute(0, 2, 1, 3, 4))
    return out


class UpConv(nn.ConvTranspose2d):
    """ConvTranspose2d(i, o, 4, 2, 1) with the same parameters (and state-dict names)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 4, 2, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under torch.compile the native operator measured faster (720p v3.6 pair 1.77 vs 1.95 s).
        # A CPU rewrite: on CUDA cuDNN's own transposed convolution is used.
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if not channels_last or x.device.type != "cpu" or torch.compiler.is_compiling():
            return super().forward(x)
        n, _, h, w = x.shape
        c = self.out_channels
        weight = phase_weight(self.weight).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, weight, self.bias.repeat(4), padding=1)  # n, 4c, h + 1, w + 1
        out = torch.empty(
            (n, c, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last
        )
        phases = out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c)
        y = y.permute(0, 2, 3, 1)
        for i, (py, px) in enumerate(PHASES):
            phases[:, :, py, :, px, :].copy_(y[:, py : py + h, px : px + w, i * c : (i + 1) * c])
        return out


def apply(net: nn.Module) -> int:
    """Every 4x4 stride-2 padding-1 transposed convolution becomes an UpConv (same parameters):
    the 2x2 phase form for channels-last inputs. In place; returns how many were changed."""
    n = 0
    for m in net.modules():
        if (
            type(m) is nn.ConvTranspose2d
            and m.kernel_size == (4, 4)
            and m.stride == (2, 2)
            and m.padding == (1, 1)
            and m.groups == 1
            and m.output_padding == (0, 0)
        ):
            m.__class__ = UpConv
            n += 1
    return n
