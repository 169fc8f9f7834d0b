"""The RIFE 4.x networks (v4.0 to v4.26, lite and heavy) as five parametrised families A-E.

Written from ../shared/docs/model-spec-v4x.md (sections 1-6). A `Layout` holds everything that
differs between versions (activation, block body, head, feature encoder, widths, scales, padding
modulo, ensemble rule); versions with the same layout run identical code with other numbers. Plain
arithmetic: the speed-ups are applied at load time (rife_cli.models.transforms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .finite import unless_finite
from .ifnet_v3 import deconv, resize, swap
from .warp import warp

# Family A: a block-1 flow update larger than this (pixels, both directions) redoes the pair coarser.
LARGE_MOTION = 32
# How family A redoes those pairs:
# - "subset": only them, after reading on the host which they are (on CUDA a wait for the device:
#   the host queues nothing meanwhile);
# - "select": the coarse pass on the whole batch, each pair's frame picked on the device (no
#   wait, one shape, but the pass always runs: 0.71x the pairs/s on this project's CPU, see
#   docs/gpu.md);
# - "defer": no coarse pass; those pairs' frames come out NaN, which the engine's finite flags
#   (downloaded with the frames, no wait) send to its redo, where the network runs in "select"
#   form on them alone. No wait and no extra work where there is no large motion (most pairs).
# - "auto": "subset" where the tensors are on the CPU (reading them there waits for nothing),
#   else "defer".
LARGE_MOTION_FORMS = ("auto", "subset", "select", "defer")


@dataclass(frozen=True)
class Layout:
    """One key set of the published files, and how the network that reads it runs."""

    name: str  # the group's label, e.g. "4.13-group"
    versions: tuple[str, ...]  # vs-rife's version strings, oldest first
    family: str  # "A" .. "E"
    widths: tuple[int, ...]  # c of each block
    scales: tuple[int, ...]  # base scale per block (flow scale 1)
    modulo: int  # pad to a multiple of this (divided by the flow scale when that is < 1)
    head_k: int = 0  # 0: deconv -> 5 channels (4.1-4.4); else deconv -> 4K, PixelShuffle(2)
    encoder: str | None = None  # None, "seq1", "seq3", "head"
    enc_hidden: int = 0
    enc_out: int = 0  # E: feature channels per frame
    groups: int = 1  # ResConv groups (2 only in 4.14.lite)

    @property
    def act(self) -> str:
        return "prelu" if self.family == "A" else "lrelu"

    @property
    def body(self) -> str:
        return {"A": "skip8", "B": "plain8"}.get(self.family, "res8")

    @property
    def ensemble(self) -> bool:
        return self.family != "E"

    @property
    def in_channels(self) -> tuple[int, ...]:
        e2 = 2 * self.enc_out
        rest = {"A": 12, "B": 12, "C": 12, "D": 12 + e2, "E": 20 + e2}[self.family]
        return (7 + e2,) + (rest,) * (len(self.widths) - 1)


def _lay(name, versions, family, widths, **kw) -> Layout:
    kw.setdefault("scales", (8, 4, 2, 1))
    kw.setdefault("modulo", 32)
    return Layout(name, tuple(versions.split()), family, tuple(widths), **kw)


_W4 = (192, 128, 96, 64)
_LITE = (128, 96, 64, 48)
_E5 = (192, 128, 96, 64, 32)
_S5 = (16, 8, 4, 2, 1)
# The 17 key sets of spec section 8; the first version of each names the group. v4.0 shares 4.1's
# keys but pads to 128 (model-spec.md; the goldens of ../golden were made so): its own layout.
# fmt: off
LAYOUTS: tuple[Layout, ...] = (
    _lay("4.0", "4.0", "A", _W4, modulo=128),
    _lay("4.1", "4.1", "A", _W4, modulo=64),  # 64: the large-motion retry doubles the scales
    _lay("4.2", "4.2 4.3 4.4", "B", _W4),
    _lay("4.5", "4.5", "C", _W4, head_k=5),
    _lay("4.6", "4.6", "C", _W4, head_k=6),
    _lay("4.7", "4.7 4.8 4.9", "D", _W4, head_k=6, encoder="seq1", enc_hidden=16, enc_out=4),
    _lay("4.10", "4.10 4.11 4.12", "D", _W4, head_k=6, encoder="seq3", enc_hidden=32, enc_out=8),
    _lay("4.12.lite", "4.12.lite 4.13.lite", "D", _LITE, head_k=6, encoder="seq3", enc_hidden=32,
         enc_out=4),
    _lay("4.13", "4.13 4.14 4.15 4.17 4.18 4.19 4.24", "D", _W4, head_k=6, encoder="head",
         enc_hidden=32, enc_out=8),
    _lay("4.14.lite", "4.14.lite", "D", _W4, head_k=6, encoder="head", enc_hidden=32, enc_out=8,
         groups=2),
    _lay("4.15.lite", "4.15.lite 4.16.lite 4.17.lite", "D", _LITE, head_k=6, encoder="head",
         enc_hidden=16, enc_out=4),
    _lay("4.20", "4.20", "D", (384, 192, 96, 48), head_k=6, encoder="head", enc_hidden=32,
         enc_out=8),
    _lay("4.21", "4.21 4.22 4.23", "E", (256, 192, 96, 48), head_k=13, encoder="head",
         enc_hidden=32, enc_out=8),
    _lay("4.22.lite", "4.22.lite", "E", (192, 128, 64, 32), head_k=13, encoder="head",
         enc_hidden=16, enc_out=4),
    _lay("4.25", "4.25 4.26", "E", _E5, scales=_S5, modulo=64, head_k=13, encoder="head",
         enc_hidden=16, enc_out=4),
    _lay("4.25.lite", "4.25.lite", "E", (192, 128, 96, 64, 24), scales=(32, 16, 8, 4, 1),
         modulo=128, head_k=13, encoder="head", enc_hidden=16, enc_out=4),
    _lay("4.25.heavy", "4.25.heavy", "E", (384, 256, 192, 128, 64), scales=_S5, modulo=64,
         head_k=13, encoder="head", enc_hidden=16, enc_out=4),
    _lay("4.26.heavy", "4.26.heavy", "E", _E5, scales=_S5, modulo=64, head_k=13, encoder="head",
         enc_hidden=16, enc_out=16),
)
# fmt: on
VERSIONS: dict[str, Layout] = {v: lay for lay in LAYOUTS for v in lay.versions}


def version_key(v: str) -> tuple:
    """Sort key: 4.9 < 4.10 < 4.25 < 4.25.heavy < 4.25.lite < 4.26."""
    major, minor, *rest = v.split(".")
    return (int(major), int(minor), rest[0] if rest else "")


def conv(i: int, o: int, stride: int, act: str) -> nn.Sequential:
    """3x3 convolution with bias, then the activation (names P.0.*, and P.1.weight for PReLU)."""
    a = nn.PReLU(o) if act == "prelu" else nn.LeakyReLU(0.2)
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), a)


class ResConv(nn.Module):
    """lrelu0.2(conv3x3_g(x) * beta + x)."""

    def __init__(self, c: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, groups=groups)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class Block(nn.Module):
    """IFBlock(in, c) of spec section 2, with the layout's body and head."""

    def __init__(self, lay: Layout, in_planes: int, c: int):
        super().__init__()
        self.skip = lay.body == "skip8"
        self.k = lay.head_k
        self.conv0 = nn.Sequential(conv(in_planes, c // 2, 2, lay.act), conv(c // 2, c, 2, lay.act))
        if lay.body == "res8":
            self.convblock = nn.Sequential(*(ResConv(c, lay.groups) for _ in range(8)))
        else:
            self.convblock = nn.Sequential(*(conv(c, c, 1, lay.act) for _ in range(8)))
        if self.k:
            self.lastconv = nn.Sequential(deconv(c, 4 * self.k), nn.PixelShuffle(2))
        else:
            self.lastconv = deconv(c, 5)

    def body(self, feat: torch.Tensor) -> torch.Tensor:
        out = self.convblock(feat)
        return out + feat if self.skip else out

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, s: float):
        """(flow update, mask update, 8-channel feature or None), all fp32 at x's size."""
        x = resize(x, 1.0 / s)
        if flow is not None:
            x = torch.cat([x, resize(flow, 1.0 / s) / s], 1)
        feat = self.body(self.conv0(x))
        # Flows and masks leave the block in fp32 whatever the convolutions ran in (bf16 flows
        # lose fractions of a pixel when accumulated).
        if self.k:
            out = resize(self.lastconv(feat).float(), s)
            flow_scale = s
        else:
            out = resize(self.lastconv(feat).float(), 2 * s)
            flow_scale = 2 * s
        dfeat = out[:, 5:13] if self.k == 13 else None
        return out[:, 0:4] * flow_scale, out[:, 4:5], dfeat


class Head(nn.Module):
    """The feature encoder of 4.13 and later ("Head"): clamp, then conv, conv, conv, deconv."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.cnn1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn3 = deconv(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.cnn0(x.clamp(0.0, 1.0)), 0.2)
        x = F.leaky_relu(self.cnn1(x), 0.2)
        x = F.leaky_relu(self.cnn2(x), 0.2)
        return self.cnn3(x)


def encoder(lay: Layout) -> nn.Module | None:
    h, e = lay.enc_hidden, lay.enc_out
    if lay.encoder == "seq1":
        return nn.Sequential(nn.Conv2d(3, h, 3, 2, 1), deconv(h, e))
    if lay.encoder == "seq3":
        lrelu = nn.LeakyReLU(0.2)
        return nn.Sequential(
            nn.Conv2d(3, h, 3, 2, 1), lrelu, nn.Conv2d(h, h, 3, 1, 1), lrelu, nn.Conv2d(h, h, 3, 1, 1), lrelu,
            deconv(h, e),
        )  # fmt: skip
    if lay.encoder == "head":
        return Head(h, e)
    return None


@dataclass
class _Pair:
    """One batch of pairs' fixed inputs: frames, encoder features, timestep plane."""

    img0: torch.Tensor
    img1: torch.Tensor
    f0: torch.Tensor | None
    f1: torch.Tensor | None
    tplane: torch.Tensor

    def rows(self, idx: torch.Tensor) -> _Pair:
        f0 = None if self.f0 is None else self.f0[idx]
        f1 = None if self.f1 is None else self.f1[idx]
        return _Pair(self.img0[idx], self.img1[idx], f0, f1, self.tplane[idx])


class IFNetV4x(nn.Module):
    """Any RIFE 4.x network: forward(img0, img1, t, scale) -> the frame at t (padded size)."""

    family = "v4"  # the engine's family: any timestep in one pass
    large_motion = "auto"  # one of LARGE_MOTION_FORMS (family A only)

    def __init__(self, layout: Layout, version: str | None = None, ensemble: bool = False):
        super().__init__()
        if ensemble and not layout.ensemble:
            raise ValueError(f"{layout.name}: no ensemble in family {layout.family}")
        self.layout = layout
        self.version = version or layout.versions[0]
        self.ensemble = ensemble
        self.pad_base = layout.modulo
        for i, (cin, c) in enumerate(zip(layout.in_channels, layout.widths)):
            setattr(self, f"block{i}", Block(layout, cin, c))
        enc = encoder(layout)
        if enc is not None:
            self.encode = enc

    @property
    def blocks(self) -> list[Block]:
        return [getattr(self, f"block{i}") for i in range(len(self.layout.widths))]

    # ----- one level
    def _first(self, p: _Pair, s: float, ensemble: bool):
        """Block 0 from the frames alone: flow, mask, feature."""
        feats = [] if p.f0 is None else [p.f0, p.f1]
        flow, mask, feat = self.blocks[0](torch.cat([p.img0, p.img1, *feats, p.tplane], 1), None, s)
        if ensemble:
            rfeats = [] if p.f0 is None else [p.f1, p.f0]
            x = torch.cat([p.img1, p.img0, *rfeats, 1 - p.tplane], 1)
            rflow, rmask, _ = self.blocks[0](x, None, s)
            flow, mask = (flow + swap(rflow)) / 2, (mask - rmask) / 2
        return flow, mask, feat

    def _level(self, i: int, p: _Pair, s: float, flow, mask, feat):
        """Block i >= 1 on the current warps: (update, mask update, feature, forward update)."""
        w0, w1 = warp(p.img0, flow[:, 0:2]), warp(p.img1, flow[:, 2:4])
        if p.f0 is not None:
            wf0, wf1 = warp(p.f0, flow[:, 0:2]), warp(p.f1, flow[:, 2:4])
            fwd, rev = [w0, w1, wf0, wf1], [w1, w0, wf1, wf0]
        else:
            fwd, rev = [w0, w1], [w1, w0]
        extra = [] if feat is None else [feat]
        d, m, feat = self.blocks[i](torch.cat([*fwd, p.tplane, mask, *extra], 1), flow, s)
        d_fwd = d
        if self.ensemble:
            rd, rm, _ = self.blocks[i](torch.cat([*rev, 1 - p.tplane, -mask], 1), swap(flow), s)
            d, m = (d + swap(rd)) / 2, (m - rm) / 2
        return d, m, feat, d_fwd

    def _update(self, flow, mask, d, m):
        # A-C accumulate the mask; D and E replace it with each block's.
        return flow + d, (mask + m if self.layout.family in "ABC" else m)

    def _blend(self, p: _Pair, flow, mask) -> torch.Tensor:
        w0, w1 = warp(p.img0, flow[:, 0:2]), warp(p.img1, flow[:, 2:4])
        sm = torch.sigmoid(mask)
        return unless_finite(w0 * sm + w1 * (1 - sm), flow)

    def _rest(self, p: _Pair, scales, start: int, flow, mask, feat) -> torch.Tensor:
        for i in range(start, len(self.blocks)):
            d, m, feat, _ = self._level(i, p, scales[i], flow, mask, feat)
            flow, mask = self._update(flow, mask, d, m)
        return self._blend(p, flow, mask)

    # ----- the network
    def forward(
        self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor, scale: float = 1.0
    ) -> torch.Tensor:
        """`t` holds one timestep per pair (shape N); frames are padded to `pad_base` / scale."""
        n, _, h, w = img0.shape
        f0 = f1 = None
        if hasattr(self, "encode"):
            # On the unclamped frames; warped and fed in fp32 like the frames.
            f0, f1 = self.encode(img0).float(), self.encode(img1).float()
        img0, img1 = img0.clamp(0.0, 1.0), img1.clamp(0.0, 1.0)
        tplane = t.to(img0.dtype).view(n, 1, 1, 1).expand(n, 1, h, w)
        p = _Pair(img0, img1, f0, f1, tplane)
        scales = [b / scale for b in self.layout.scales]
        flow, mask, feat = self._first(p, scales[0], self.ensemble)
        if self.layout.family != "A":
            return self._rest(p, scales, 1, flow, mask, feat)
        d, m, _, d_fwd = self._level(1, p, scales[1], flow, mask, feat)
        # Large motion, decided per pair on the forward update (as the reference decides it for a
        # batch of one): those pairs start again at twice the scales.
        fa = d_fwd.abs().amax(dim=(2, 3))
        large = (fa[:, 0:2].amax(1) > LARGE_MOTION) & (fa[:, 2:4].amax(1) > LARGE_MOTION)
        flow, mask = self._update(flow, mask, d, m)
        form = self.large_motion_form(large.device)
        if form == "defer":
            fine = self._rest(p, scales, 2, flow, mask, None)
            return torch.where(large.view(n, 1, 1, 1), torch.nan, fine)
        if form == "select":
            fine = self._rest(p, scales, 2, flow, mask, None)
            return torch.where(large.view(n, 1, 1, 1), self._coarse(p, scales), fine)
        if not bool(large.any()):
            return self._rest(p, scales, 2, flow, mask, None)
        out = torch.empty_like(img0)
        keep = (~large).nonzero().flatten()
        if keep.numel():
            out[keep] = self._rest(p.rows(keep), scales, 2, flow[keep], mask[keep], None)
        idx = large.nonzero().flatten()
        out[idx] = self._coarse(p.rows(idx), scales)
        return out

    def large_motion_form(self, device: torch.device) -> str | None:
        """The large-motion form this network takes on `device` (None: not family A)."""
        if self.layout.family != "A":
            return None
        if self.large_motion == "auto":
            return "subset" if device.type == "cpu" else "defer"
        return self.large_motion

    def _coarse(self, p: _Pair, scales) -> torch.Tensor:
        """Family A's large-motion pass: from the frames again at twice the scales."""
        coarse = [2 * x for x in scales]
        flow, mask, _ = self._first(p, coarse[0], False)  # the rerun of block 0 is not ensembled
        d, m, _, _ = self._level(1, p, coarse[1], flow, mask, None)
        flow, mask = self._update(flow, mask, d, m)
        return self._rest(p, coarse, 2, flow, mask, None)


def newest_first(versions) -> list[str]:
    return sorted(versions, key=version_key, reverse=True)
