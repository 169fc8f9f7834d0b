"""Speed-ups applied to a loaded network, so that the networks stay plain arithmetic and every
family gets them without copies: `apply(net, device, tuning)`, called once by the engine.

- upconv: 4x4 stride-2 transposed convolutions as one 2x2 convolution of their four output phases
  (channels-last inputs; oneDNN runs it at its ordinary-convolution speed).
- winograd: stride-1 3x3 convolutions by NNPACK's Winograd kernel on the CPU where it pays (one
  intra-op thread, fp32, large enough maps), blocks run sample by sample there, and the v3.x heads'
  first layers merged into one Winograd convolution.
- mirrored: the v3.x blocks' two mirrored calls as one batch, or with one joint stem and lanes.
- padding: v3.x inner channels zero-padded to a multiple of N (GPU tensor cores; a bench option).

Each changes float rounding only; none changes the state dict's names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UsageError
from ..ifnet_v3 import IFNetV3
from . import mirrored, padding, upconv, winograd


@dataclass
class Tuning:
    """Which speed-ups to apply. All off is the reference-like network (the benchmark baseline)."""

    phase_deconv: bool = True  # upconv (takes effect for channels-last inputs)
    winograd: bool = True  # winograd (CPU only; its kernel switches on inside winograd.enabled)
    mirrored: str = "batch"  # v3.x: "serial" (as the reference), "batch" (2N), "joint"
    mirrored_map: Callable | None = None  # "joint": how the two trunks run (CPU lanes' map)
    pad_channels: int = 0  # v3.x: zero-pad inner channels to a multiple of this (0: off)

    @classmethod
    def reference(cls) -> Tuning:
        return cls(phase_deconv=False, winograd=False, mirrored="serial")


def apply(net: nn.Module, device: torch.device, tuning: Tuning | None = None) -> nn.Module:
    """The network with the speed-ups of `tuning` applied (in place, except channel padding,
    which returns a padded copy)."""
    tuning = tuning or Tuning()
    if tuning.pad_channels:
        if not isinstance(net, IFNetV3):
            raise UsageError("--pad-channels is for the v3.x models (90/45 channels)")
        net = padding.pad_channels(net, tuning.pad_channels)
    if tuning.phase_deconv:
        upconv.apply(net)
    if tuning.winograd and device.type == "cpu":
        winograd.apply(net)
    if isinstance(net, IFNetV3):
        mirrored.apply(net, tuning.mirrored, tuning.mirrored_map)
    return net
