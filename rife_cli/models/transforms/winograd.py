"""3x3 convolutions by Winograd's algorithm on the CPU (NNPACK, built into PyTorch's x86 wheels).

Most of a pair's time on the CPU is the stride-1 3x3 convolutions of the blocks' trunks, which
oneDNN runs as direct convolutions close to the cores' fp32 peak. NNPACK's Winograd F(6x6, 3x3)
needs about a fifth of the multiplications. It runs here only where PyTorch has one intra-op thread
(a CPU lane, rife_cli.engine.lanes, or a 1-core machine): PyTorch gives NNPACK a thread pool of its own,
sized by the thread count of its first caller, and a pool of more than one thread measured poorly
(it scales 1.6x on two cores where direct convolutions scale 2x, and its spinning workers slow the
OpenMP operators around it). With one thread the pool runs inline in the caller. Measured on this
project's 2-core AVX2 CPU, one thread, NNPACK vs direct (channels-last) per convolution: 90
channels at 184x320 48 vs 96 ms, 92x160 12.5 vs 24.0, 46x80 3.0 vs 6.0, 23x40 0.74 vs 1.55; 192
channels at 23x40 4.2 vs 6.0 but at 12x20 2.8 vs 1.6 (hence MIN_POSITIONS). The sums are
associated differently, as cuDNN's Winograd kernels do on a GPU: outputs move by float rounding
(about 1e-6 relative per layer), not by any approximation of the network.

NNPACK's inference kernel takes one contiguous NCHW sample (its batched kernel measured slower than
single calls), so a trunk runs sample by sample (`per_sample`). It is used only inside
`enabled(True)` (the Interpolator's default on the CPU), for fp32 without autocast and outside
torch.compile; everywhere else the native convolution runs, and the reference-like benchmark
baseline keeps the native one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

_ENABLED = contextvars.ContextVar("rife_winograd", default=False)
# Smaller feature maps stay direct (NNPACK transforms the weights on every call, which tiny maps
# do not amortise): single-threaded, 920 positions won for 90-192 channels, 240 lost (above).
MIN_POSITIONS = 512


@functools.cache
def available() -> bool:
    """NNPACK is compiled in and initialises on this CPU (it needs AVX2 on x86)."""
    if not hasattr(torch, "_nnpack_spatial_convolution"):  # a private operator: may go away
        return False
    try:
        return bool(torch.backends.nnpack.is_available())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    token = _ENABLED.set(on)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def applies(x: torch.Tensor) -> bool:
    """Whether 3x3 stride-1 convolutions over `x` (N x C x H x W) take the Winograd path."""
    # is_compiling() first: torch.compile must not trace the rest (a context variable read would
    # break its graph, after which the check would run eagerly and say yes).
    return (
        not torch.compiler.is_compiling()
        and _ENABLED.get()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.shape[-1] * x.shape[-2] >= MIN_POSITIONS
        and not torch.is_autocast_enabled("cpu")
        and torch.get_num_threads() == 1
        and available()
    )


class Conv3x3(nn.Conv2d):
    """Conv2d(i, o, 3, stride, padding 1) with the same parameters (and state-dict names)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(in_channels, out_channels, 3, stride, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and x.shape[0] == 1 and x.is_contiguous() and applies(x):
            return torch._nnpack_spatial_convolution(x, self.weight.contiguous(), self.bias, [1, 1])
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def per_sample(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) for a shape-preserving, per-sample `fn`, run one contiguous sample at a time when the
    Winograd path applies; the result keeps x's memory format."""
    if not applies(x):
        return fn(x)
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        out[i : i + 1].copy_(fn(x[i : i + 1].contiguous()))
    return out


# ----- the transform: which layers and blocks take the Winograd path


class _PerSampleBody:
    """For blocks with a `body(feat)` (the 4.x families): the body one sample at a time where the
    Winograd path applies (NNPACK's inference kernel takes one contiguous NCHW sample)."""

    def body(self, feat: torch.Tensor) -> torch.Tensor:
        return per_sample(super().body, feat)


class _WinogradTrunkHeads:
    """For the v3.x IFBlock: per sample, the trunk by Winograd, then both heads' first transposed
    convolutions as one Winograd 3x3 convolution over the trunk's NCHW output (their four output
    phases; measured on the 2-core CPU, one thread, 184x320: 115 ms for both against 2 x 95 ms in
    the 2x2 phase form) and one interleaving copy each."""

    def trunk_heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not applies(feat):
            return super().trunk_heads(feat)
        ups = [self._one(feat[i : i + 1].contiguous()) for i in range(len(feat))]
        up_flow, up_mask = (torch.cat(parts) for parts in zip(*ups))
        return up_flow, up_mask

    def _one(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .upconv import interleave_phases, phase_weight_3x3

        feat = self.trunk(feat)
        first = (self.conv1[0], self.conv2[0])
        weight = torch.cat([phase_weight_3x3(m.weight) for m in first])
        bias = torch.cat([m.bias.repeat(4) for m in first])
        y = torch._nnpack_spatial_convolution(feat, weight, bias, [1, 1])
        split = 4 * first[0].out_channels
        return interleave_phases(y[:, :split]), interleave_phases(y[:, split:])


@functools.cache
def _with(mixin: type, cls: type) -> type:
    return type(cls.__name__, (mixin, cls), {"__module__": cls.__module__})


def is_plain_3x3(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.kernel_size == (3, 3)
        and m.stride == (1, 1)
        and m.padding == (1, 1)
        and m.dilation == (1, 1)
        and m.groups == 1
    )


def apply(net: nn.Module) -> int:
    """Every stride-1 3x3 convolution becomes a Conv3x3 (same parameters); 4.x blocks run their
    bodies per sample and v3.x blocks their trunks and heads (where Winograd applies). In place;
    returns how many convolutions were changed."""
    from ..ifnet_v3 import IFBlock
    from ..ifnet_v4x import Block

    n = 0
    for m in net.modules():
        if is_plain_3x3(m):
            m.__class__ = Conv3x3
            n += 1
        elif isinstance(m, Block) and not isinstance(m, _PerSampleBody):
            m.__class__ = _with(_PerSampleBody, type(m))
        elif isinstance(m, IFBlock) and not isinstance(m, _WinogradTrunkHeads):
            m.__class__ = _with(_WinogradTrunkHeads, type(m))
    return n
