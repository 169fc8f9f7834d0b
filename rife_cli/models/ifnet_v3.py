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


# The mirrored call's input channels in terms of the forward call's [w0 (3), w1 (3), mask, flow
# (4)]: [w1, w0, -mask, flow[2:4], flow[0:2]].
MIRROR_CHANNELS = [3, 4, 5, 0, 1, 2, 6, 9, 10, 7, 8]
MIRROR_SIGNS = torch.tensor([1.0] * 6 + [-1.0] + [1.0] * 4).view(1, 11, 1, 1)


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
        return self.tail(
            self.conv0(torch.cat([resize(x, 1.0 / s), resize(flow, 1.0 / s) / s], 1)), s
        )

    def mirrored_stem(self, x: torch.Tensor, flow: torch.Tensor, s: float) -> torch.Tensor:
        """conv0 of both mirrored calls at once, from the forward call's inputs only: x = [w0, w1,
        mask] and flow. The mirrored call's input is a signed permutation of the same channels
        ([w1, w0, -mask], flow halves swapped), so its first convolution is the forward one with
        permuted, signed input weights: one 11 -> 90 convolution over one input instead of two
        11 -> 45 over two assembled inputs (720p, one thread: 69 vs 101 ms at the finest level),
        then conv0's second layer for both as one grouped convolution. Returns [N, 2c, h, w]:
        the forward call's c channels, then the mirrored call's."""
        inp = torch.cat([resize(x, 1.0 / s), resize(flow, 1.0 / s) / s], 1)
        (conv_a, prelu_a), (conv_b, prelu_b) = self.conv0
        w_mirror = conv_a.weight[:, MIRROR_CHANNELS] * MIRROR_SIGNS.to(conv_a.weight)
        feat = F.conv2d(
            inp,
            torch.cat([conv_a.weight, w_mirror]),
            conv_a.bias.repeat(2),
            stride=2,
            padding=1,
        )
        feat = F.prelu(feat, prelu_a.weight.repeat(2))
        feat = F.conv2d(
            feat, conv_b.weight.repeat(2, 1, 1, 1), conv_b.bias.repeat(2), 2, 1, groups=2
        )
        return F.prelu(feat, prelu_b.weight.repeat(2))

    def tail(self, feat: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after conv0: the trunk and the two heads."""
        if winograd.applies(feat):
            ups = [self._winograd_tail(feat[i : i + 1].contiguous()) for i in range(len(feat))]
            up_flow, up_mask = (torch.cat(parts) for parts in zip(*ups))
        else:
            feat = self._trunk(feat)
            up_flow, up_mask = self.conv1[0](feat), self.conv2[0](feat)
        # fp32 out of the block whatever the convolutions ran in (see ifnet_v4x.Block.forward).
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


def _tail(block: IFBlock, feat: torch.Tensor, s: float, i: int):
    """One of the mirrored calls after conv0: channel half i of mirrored_stem's output."""
    c = feat.shape[1] // 2
    return block.tail(feat[:, i * c : (i + 1) * c], s)


class IFNetV3(nn.Module):
    """Makes the midpoint of each pair from two mirrored calls of each block."""

    family = "v3"
    pad_base = 32
    # How the two mirrored block calls run. None: as one batch of 2N. Otherwise a map(fn, halves)
    # -> list: builtin-like for one after the other, as the reference makes them (the benchmark
    # baseline: in NCHW two single calls are faster than one of 2N), or CPU lanes side by side.
    mirrored_map: Callable[[Callable, Iterable], list] | None = None
    # With a mirrored_map: both calls' conv0 at once (IFBlock.mirrored_stem), the rest mapped.
    joint_stem = False

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
            if self.mirrored_map is not None and self.joint_stem:
                feat = block.mirrored_stem(torch.cat([w0, w1, mask], 1), flow, s)
                halves = self.mirrored_map(functools.partial(_tail, block, feat, s), (0, 1))
            else:
                x = torch.cat([torch.cat([w0, w1, mask], 1), torch.cat([w1, w0, -mask], 1)], 0)
                f_in = torch.cat([flow, torch.cat([flow[:, 2:4], flow[:, 0:2]], 1)], 0)
                if self.mirrored_map is None:
                    f, m = block(x, f_in, s)
                    halves = [(f[:n], m[:n]), (f[n:], m[n:])]
                else:
                    halves = self.mirrored_map(
                        functools.partial(_half, block, x, f_in, s, n), (0, n)
                    )
            (f0, m0), (f1, m1) = halves
            flow = flow + (f0 + torch.cat([f1[:, 2:4], f1[:, 0:2]], 1)) / 2
            mask = mask + (m0 - m1) / 2
            w0 = warp(img0, flow[:, 0:2])
            w1 = warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return w0 * m + w1 * (1 - m)
