"""The v3.x HD network (v3.6, v3.8): three IFBlocks that refine a bidirectional flow at midpoints."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd
from .upconv import UpConv, interleave_phases, phase_weight_3x3
from .warp import warp
from .winograd import Conv3x3


def conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(Conv3x3(i, o, stride), nn.PReLU(o))


def deconv(i: int, o: int) -> nn.ConvTranspose2d:
    return UpConv(i, o)


def resize(x: torch.Tensor, f: float) -> torch.Tensor:
    if f == 1:
        return x
    return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)


class IFBlock(nn.Module):
    def __init__(self, in_planes: int, c: int = 90):
        super().__init__()
        self.conv0 = nn.Sequential(conv(in_planes, c // 2, 2), conv(c // 2, c, 2))
        self.convblock0 = nn.Sequential(conv(c, c), conv(c, c))
        self.convblock1 = nn.Sequential(conv(c, c), conv(c, c))
        self.convblock2 = nn.Sequential(conv(c, c), conv(c, c))
        self.convblock3 = nn.Sequential(conv(c, c), conv(c, c))
        self.conv1 = nn.Sequential(deconv(c, c // 2), nn.PReLU(c // 2), deconv(c // 2, 4))
        self.conv2 = nn.Sequential(deconv(c, c // 2), nn.PReLU(c // 2), deconv(c // 2, 1))

    def forward(self, x: torch.Tensor, flow: torch.Tensor, s: float):
        x = resize(x, 1.0 / s)
        flow = resize(flow, 1.0 / s) / s
        feat = self.conv0(torch.cat([x, flow], 1))
        if winograd.applies(feat):
            ups = [self._winograd_tail(feat[i : i + 1].contiguous()) for i in range(len(feat))]
            up_flow, up_mask = (torch.cat(parts) for parts in zip(*ups))
        else:
            feat = self._trunk(feat)
            up_flow, up_mask = self.conv1[0](feat), self.conv2[0](feat)
        # fp32 out of the block whatever the convolutions ran in (see IFBlock4.forward).
        dflow = resize(self.conv1[1:](up_flow).float(), s) * s
        dmask = resize(self.conv2[1:](up_mask).float(), s)
        return dflow, dmask

    def _winograd_tail(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One contiguous NCHW sample: the trunk by Winograd (Conv3x3), then both heads' first
        transposed convolutions as one Winograd 3x3 convolution over the trunk's NCHW output
        (their four output phases; measured on the 2-core CPU, one thread, 184x320: 115 ms for
        both against 2 x 95 ms in the 2x2 phase form) and one interleaving copy each."""
        feat = self._trunk(feat)
        first = (self.conv1[0], self.conv2[0])
        weight = torch.cat([phase_weight_3x3(m.weight) for m in first])
        bias = torch.cat([m.bias.repeat(4) for m in first])
        y = torch._nnpack_spatial_convolution(feat, weight, bias, [1, 1])
        split = 4 * first[0].out_channels
        return interleave_phases(y[:, :split]), interleave_phases(y[:, split:])

    def _trunk(self, feat: torch.Tensor) -> torch.Tensor:
        feat = self.convblock0(feat) + feat
        feat = self.convblock1(feat) + feat
        feat = self.convblock2(feat) + feat
        return self.convblock3(feat) + feat


def _half(block: IFBlock, x: torch.Tensor, flow: torch.Tensor, s: float, n: int, i: int):
    """One of the mirrored block calls: samples i to i + n of the batch of 2N."""
    return block(x[i : i + n], flow[i : i + n], s)


class IFNetV3(nn.Module):
    """Makes the midpoint of each pair from two mirrored calls of each block."""

    family = "v3"
    pad_base = 32
    # How the two mirrored block calls run. None: as one batch of 2N. Otherwise a map(fn, halves)
    # -> list: builtin-like for one after the other, as the reference makes them (the benchmark
    # baseline: in NCHW two single calls are faster than one of 2N), or CPU lanes side by side.
    mirrored_map: Callable[[Callable, Iterable], list] | None = None

    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(11)
        self.block1 = IFBlock(11)
        self.block2 = IFBlock(11)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        n, _, h, w = img0.shape
        flow = img0.new_zeros(n, 4, h, w)
        mask = img0.new_zeros(n, 1, h, w)
        w0, w1 = img0, img1
        for block, s in zip(
            (self.block0, self.block1, self.block2), (4 / scale, 2 / scale, 1 / scale)
        ):
            x = torch.cat([torch.cat([w0, w1, mask], 1), torch.cat([w1, w0, -mask], 1)], 0)
            f_in = torch.cat([flow, torch.cat([flow[:, 2:4], flow[:, 0:2]], 1)], 0)
            if self.mirrored_map is None:
                f, m = block(x, f_in, s)
            else:
                half = functools.partial(_half, block, x, f_in, s, n)
                halves = self.mirrored_map(half, (0, n))
                f, m = (torch.cat(parts) for parts in zip(*halves))
            f0, f1 = f[:n], f[n:]
            flow = flow + (f0 + torch.cat([f1[:, 2:4], f1[:, 0:2]], 1)) / 2
            mask = mask + (m[:n] - m[n:]) / 2
            w0 = warp(img0, flow[:, 0:2])
            w1 = warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return w0 * m + w1 * (1 - m)
