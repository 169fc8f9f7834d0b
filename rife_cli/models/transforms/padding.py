"""Zero-padding the v3.x networks' inner channel counts (90 and 45) to multiples of 8 (96, 48).

GPU tensor cores take half-precision convolutions whose channel counts are multiples of 8; with 90
and 45 cuDNN pads or falls back to other kernels. Padding the weights with zeros gives the same
outputs (a padded channel is zero after every layer: zero weights, zero bias, PReLU(0) = 0, and
the convolutions reading it have zero weights for it) at 1.14x the multiply-adds. Whether that
pays is a GPU measurement (`rife bench --pad-channels 8`); on the CPU it only adds work.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..ifnet_v3 import IFBlock, IFNetV3


def _up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _grow(t: torch.Tensor, shape: tuple[int, ...]) -> nn.Parameter:
    """t in the leading corner of a zero tensor of `shape`."""
    out = t.new_zeros(shape)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return nn.Parameter(out, requires_grad=t.requires_grad)


def _conv(conv: nn.Conv2d, inp: int, out: int) -> None:
    k = conv.weight.shape[2:]
    if isinstance(conv, nn.ConvTranspose2d):  # weight [in, out, k, k]
        conv.weight = _grow(conv.weight.data, (inp, out, *k))
    else:
        conv.weight = _grow(conv.weight.data, (out, inp, *k))
    conv.bias = _grow(conv.bias.data, (out,))
    conv.in_channels, conv.out_channels = inp, out


def _prelu(prelu: nn.PReLU, n: int) -> None:
    prelu.weight = _grow(prelu.weight.data, (n,))
    prelu.num_parameters = n


def _pad_block(block: IFBlock, multiple: int) -> None:
    (stem_a, prelu_a), (stem_b, prelu_b) = block.conv0
    half, c = _up(stem_a.out_channels, multiple), _up(stem_b.out_channels, multiple)
    _conv(stem_a, stem_a.in_channels, half)
    _prelu(prelu_a, half)
    _conv(stem_b, half, c)
    _prelu(prelu_b, c)
    for pair in (block.convblock0, block.convblock1, block.convblock2, block.convblock3):
        for conv, prelu in pair:
            _conv(conv, c, c)
            _prelu(prelu, c)
    for up, prelu, last in (block.conv1, block.conv2):
        _conv(up, c, half)
        _prelu(prelu, half)
        _conv(last, half, last.out_channels)


def pad_channels(net: IFNetV3, multiple: int = 8) -> IFNetV3:
    """A copy of a v3.x network with its inner channel counts zero-padded to `multiple`; the
    input (11) and output (4 flow, 1 mask) channels stay as they are."""
    if not isinstance(net, IFNetV3):
        raise TypeError("channel padding is for the v3.x networks (90/45 channels)")
    padded = copy.deepcopy(net)
    for block in (padded.block0, padded.block1, padded.block2):
        _pad_block(block, multiple)
    return padded
