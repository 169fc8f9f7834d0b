"""Backward warping by a dense optical flow, shared by both network families."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Base grids are reused across calls: building one per warp costs as much as the sampling itself.
_GRIDS: dict[tuple, torch.Tensor] = {}


def _base_grid(n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (h, w, device, dtype)
    # Under torch.compile the grid is built in the graph: a cache lookup there would be a guard
    # that fails once the cache fills, forcing a second compilation.
    grid = None if torch.compiler.is_compiling() else _GRIDS.get(key)
    if grid is None:
        xs = (
            torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
            .view(1, 1, 1, w)
            .expand(1, 1, h, w)
        )
        ys = (
            torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
            .view(1, 1, h, 1)
            .expand(1, 1, h, w)
        )
        grid = torch.cat([xs, ys], 1)
        if not torch.compiler.is_compiling():
            if len(_GRIDS) > 16:
                _GRIDS.clear()
            _GRIDS[key] = grid
    return grid.expand(n, 2, h, w)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `img` at (x + flow_x, y + flow_y): bilinear, border padding, pixel-centre grid."""
    n, _, h, w = img.shape
    # Divided per channel by Python scalars, as the reference does: bit-identical grids.
    flow = torch.cat([flow[:, 0:1] / ((w - 1) / 2.0), flow[:, 1:2] / ((h - 1) / 2.0)], 1)
    grid = _base_grid(n, h, w, flow.device, flow.dtype) + flow
    return F.grid_sample(
        img,
        grid.permute(0, 2, 3, 1).to(img.dtype),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
