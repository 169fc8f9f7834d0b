"""The networks' half of the engine's NaN/Inf check: a frame whose flow is not finite is made NaN.

The engine checks only the frames it downloads (one flag per frame, computed on the device). A
non-finite flow alone would not show there: grid_sample maps NaN coordinates outside the image, so
the warp gives a finite, wrong picture. Marking the frame carries the flow's state into that flag.
"""

from __future__ import annotations

import torch


def unless_finite(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`frame`, with NaN for every pair whose flow holds a NaN or Inf (bit-identical otherwise).
    A select, not `frame + 0 * flow.sum()`: a compiler may fold a multiplication by zero away."""
    ok = torch.isfinite(flow).flatten(1).all(1).view(-1, 1, 1, 1)
    return torch.where(ok, frame, torch.nan)
