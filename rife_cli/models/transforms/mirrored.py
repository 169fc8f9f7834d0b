"""How the v3.x networks' two mirrored block calls run: one after the other (the plain network, as
the reference), as one batch of 2N (GPU, torch.compile), or with one joint stem and the two trunks
mapped (CPU: side by side in lanes, or one after the other).

The mirrored call's input is a signed permutation of the forward call's channels ([w1, w0, -mask],
flow halves swapped), so its first convolution is the forward one with permuted, signed input
weights: one 11 -> 90 convolution over one input instead of two 11 -> 45 over two assembled inputs
(720p, one thread: 69 vs 101 ms at the finest level), then conv0's second layer for both as one
grouped convolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ..ifnet_v3 import IFBlock, IFNetV3, swap

# The mirrored call's input channels in terms of the forward call's [w0 (3), w1 (3), mask, flow
# (4)]: [w1, w0, -mask, flow[2:4], flow[0:2]].
MIRROR_CHANNELS = [3, 4, 5, 0, 1, 2, 6, 9, 10, 7, 8]
MIRROR_SIGNS = torch.tensor([1.0] * 6 + [-1.0] + [1.0] * 4).view(1, 11, 1, 1)
MODES = ("serial", "batch", "joint")


def mirrored_stem(block: IFBlock, x: torch.Tensor, flow: torch.Tensor, s: float) -> torch.Tensor:
    """conv0 of both mirrored calls at once, from the forward call's inputs only: x = [w0, w1,
    mask] and flow. Returns [N, 2c, h, w]: the forward call's c channels, then the mirrored's."""
    inp = block.stem_input(x, flow, s)
    (conv_a, prelu_a), (conv_b, prelu_b) = block.conv0
    w_mirror = conv_a.weight[:, MIRROR_CHANNELS] * MIRROR_SIGNS.to(conv_a.weight)
    feat = F.conv2d(
        inp, torch.cat([conv_a.weight, w_mirror]), conv_a.bias.repeat(2), stride=2, padding=1
    )
    feat = F.prelu(feat, prelu_a.weight.repeat(2))
    feat = F.conv2d(feat, conv_b.weight.repeat(2, 1, 1, 1), conv_b.bias.repeat(2), 2, 1, groups=2)
    return F.prelu(feat, prelu_b.weight.repeat(2))


def _serial_map(fn: Callable, items: Iterable) -> list:
    return [fn(item) for item in items]


def _half(block: IFBlock, x: torch.Tensor, flow: torch.Tensor, s: float, n: int, i: int):
    """One of the mirrored block calls: samples i to i + n of the batch of 2N."""
    return block(x[i : i + n], flow[i : i + n], s)


def _tail(block: IFBlock, feat: torch.Tensor, s: float, i: int):
    """One of the mirrored calls after conv0: channel half i of mirrored_stem's output."""
    c = feat.shape[1] // 2
    return block.tail(feat[:, i * c : (i + 1) * c], s)


class _Mirrored:
    """Mixin for IFNetV3: `mirrored_map` None runs the two calls as one batch of 2N; otherwise a
    map(fn, halves) -> list runs them (after one joint stem when `joint_stem`)."""

    mirrored_map: Callable[[Callable, Iterable], list] | None = None
    joint_stem = False

    def mirrored_calls(self, block: IFBlock, x: torch.Tensor, flow: torch.Tensor, s: float):
        n = x.shape[0]
        if self.mirrored_map is not None and self.joint_stem:
            feat = mirrored_stem(block, x, flow, s)
            return self.mirrored_map(functools.partial(_tail, block, feat, s), (0, 1))
        xx = torch.cat([x, torch.cat([x[:, 3:6], x[:, 0:3], -x[:, 6:7]], 1)], 0)
        ff = torch.cat([flow, swap(flow)], 0)
        if self.mirrored_map is None:
            f, m = block(xx, ff, s)
            return (f[:n], m[:n]), (f[n:], m[n:])
        return self.mirrored_map(functools.partial(_half, block, xx, ff, s, n), (0, n))


@functools.cache
def _mirrored_class(cls: type) -> type:
    return type(cls.__name__, (_Mirrored, cls), {"__module__": cls.__module__})


def apply(net: IFNetV3, mode: str, mirrored_map: Callable | None = None) -> None:
    """In place. "serial": the plain network's calls; "batch": one batch of 2N; "joint": one
    joint stem, then the two trunks through `mirrored_map` (lanes), else one after the other."""
    if mode not in MODES:
        raise ValueError(f"mirrored mode {mode!r}: one of {MODES}")
    if mode == "serial":
        return
    if not isinstance(net, _Mirrored):
        net.__class__ = _mirrored_class(type(net))
    if mode == "batch":
        net.mirrored_map, net.joint_stem = None, False
    else:
        net.mirrored_map, net.joint_stem = mirrored_map or _serial_map, True
