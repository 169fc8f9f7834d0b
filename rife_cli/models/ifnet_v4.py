"""The v4.0 network: four IFBlocks conditioned on the timestep, so any t in (0, 1) in one pass."""

from __future__ import annotations

import torch
from torch import nn

from .ifnet_v3 import conv, deconv, resize
from .warp import warp
from .winograd import per_sample

# A flow update larger than this (pixels, at block1) marks large motion: that pair is redone coarser.
LARGE_MOTION = 32


class IFBlock4(nn.Module):
    def __init__(self, in_planes: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(conv(in_planes, c // 2, 2), conv(c // 2, c, 2))
        self.convblock = nn.Sequential(*(conv(c, c) for _ in range(8)))
        self.lastconv = deconv(c, 5)

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, s: float):
        x = resize(x, 1.0 / s)
        if flow is not None:
            x = torch.cat([x, resize(flow, 1.0 / s) / s], 1)
        feat = self.conv0(x)
        feat = per_sample(lambda f: self.convblock(f) + f, feat)
        # Flows and masks leave the block in fp32 whatever the convolutions ran in: accumulated
        # in bf16 they lose whole fractions of a pixel (v4.0 bf16 was 31-37 dB from fp32).
        out = resize(self.lastconv(feat).float(), 2 * s)
        return out[:, 0:4] * (2 * s), out[:, 4:5]


class IFNetV4(nn.Module):
    family = "v4"
    pad_base = 128

    def __init__(self):
        super().__init__()
        self.block0 = IFBlock4(7, 192)
        self.block1 = IFBlock4(12, 128)
        self.block2 = IFBlock4(12, 96)
        self.block3 = IFBlock4(12, 64)

    def _head(self, img0, img1, tplane, scales):
        """block0 and block1 at the given scales: the part the large-motion check may redo."""
        flow, mask = self.block0(torch.cat([img0, img1, tplane], 1), None, scales[0])
        w0, w1 = warp(img0, flow[:, 0:2]), warp(img1, flow[:, 2:4])
        f, m = self.block1(torch.cat([w0, w1, tplane, mask], 1), flow, scales[1])
        return flow, mask, f, m

    def _tail(self, img0, img1, tplane, scales, flow, mask, f, m):
        flow, mask = flow + f, mask + m
        for block, s in ((self.block2, scales[2]), (self.block3, scales[3])):
            w0, w1 = warp(img0, flow[:, 0:2]), warp(img1, flow[:, 2:4])
            f, m = block(torch.cat([w0, w1, tplane, mask], 1), flow, s)
            flow, mask = flow + f, mask + m
        w0, w1 = warp(img0, flow[:, 0:2]), warp(img1, flow[:, 2:4])
        sm = torch.sigmoid(mask)
        return w0 * sm + w1 * (1 - sm)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor, scale: float = 1.0):
        """`t` holds one timestep per pair (shape N)."""
        n, _, h, w = img0.shape
        tplane = t.to(img0.dtype).view(n, 1, 1, 1).expand(n, 1, h, w)
        scales = [8 / scale, 4 / scale, 2 / scale, 1 / scale]
        flow, mask, f, m = self._head(img0, img1, tplane, scales)
        # Per pair, as the reference decides it for a batch of one. One host sync per batch.
        fa = f.abs().amax(dim=(2, 3))
        large = (fa[:, 0:2].amax(1) > LARGE_MOTION) & (fa[:, 2:4].amax(1) > LARGE_MOTION)
        if not bool(large.any()):
            return self._tail(img0, img1, tplane, scales, flow, mask, f, m)
        out = torch.empty_like(img0)
        for sel, sc in ((~large, scales), (large, [2 * x for x in scales])):
            idx = sel.nonzero().flatten()
            if idx.numel() == 0:
                continue
            a, b, tp = img0[idx], img1[idx], tplane[idx]
            if sc is scales:
                parts = (flow[idx], mask[idx], f[idx], m[idx])
            else:
                parts = self._head(a, b, tp, sc)
            out[idx] = self._tail(a, b, tp, sc, *parts)
        return out
