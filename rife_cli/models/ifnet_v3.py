"""The v3.x HD network (v3.6, v3.8): three IFBlocks that refine a bidirectional flow at midpoints.

Plain arithmetic, as model-spec.md describes it; the CPU and GPU speed-ups are applied at load time
(rife_cli.models.transforms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .finite import unless_finite
from .warp import warp


def conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, with bias), then a per-channel PReLU."""
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.PReLU(o))


def deconv(i: int, o: int) -> nn.ConvTranspose2d:
    """4x4 transposed convolution, stride 2, padding 1, with bias: doubles H and W."""
    return nn.ConvTranspose2d(i, o, 4, 2, 1)


def resize(x: torch.Tensor, f: float) -> torch.Tensor:
    if f == 1:
        return x
    return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)


def swap(flow: torch.Tensor) -> torch.Tensor:
    """The two flows of a 4-channel flow tensor exchanged."""
    return torch.cat([flow[:, 2:4], flow[:, 0:2]], 1)


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

    def stem_input(self, x: torch.Tensor, flow: torch.Tensor, s: float) -> torch.Tensor:
        return torch.cat([resize(x, 1.0 / s), resize(flow, 1.0 / s) / s], 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor, s: float):
        return self.tail(self.conv0(self.stem_input(x, flow, s)), s)

    def trunk(self, feat: torch.Tensor) -> torch.Tensor:
        feat = self.convblock0(feat) + feat
        feat = self.convblock1(feat) + feat
        feat = self.convblock2(feat) + feat
        return self.convblock3(feat) + feat

    def trunk_heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunk, then both heads' first transposed convolutions (before their PReLU)."""
        feat = self.trunk(feat)
        return self.conv1[0](feat), self.conv2[0](feat)

    def tail(self, feat: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after conv0: the trunk and the two heads."""
        up_flow, up_mask = self.trunk_heads(feat)
        # fp32 out of the block whatever the convolutions ran in (bf16 flows lose fractions of a
        # pixel when accumulated).
        dflow = resize(self.conv1[1:](up_flow).float(), s) * s
        dmask = resize(self.conv2[1:](up_mask).float(), s)
        return dflow, dmask


class IFNetV3(nn.Module):
    """Makes the midpoint of each pair from two mirrored calls of each block."""

    family = "v3"
    pad_base = 32

    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(11)
        self.block1 = IFBlock(11)
        self.block2 = IFBlock(11)

    def mirrored_calls(self, block: IFBlock, x: torch.Tensor, flow: torch.Tensor, s: float):
        """The block on [w0, w1, mask] and on the mirrored [w1, w0, -mask] with swapped flows,
        one after the other as the reference makes them: ((f0, m0), (f1, m1))."""
        mirrored = torch.cat([x[:, 3:6], x[:, 0:3], -x[:, 6:7]], 1)
        return block(x, flow, s), block(mirrored, swap(flow), s)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        n, _, h, w = img0.shape
        flow = img0.new_zeros(n, 4, h, w)
        mask = img0.new_zeros(n, 1, h, w)
        w0, w1 = img0, img1
        for block, s in zip(
            (self.block0, self.block1, self.block2), (4 / scale, 2 / scale, 1 / scale)
        ):
            (f0, m0), (f1, m1) = self.mirrored_calls(block, torch.cat([w0, w1, mask], 1), flow, s)
            flow = flow + (f0 + swap(f1)) / 2
            mask = mask + (m0 - m1) / 2
            w0 = warp(img0, flow[:, 0:2])
            w1 = warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return unless_finite(w0 * m + w1 * (1 - m), flow)
