"""Backward warping by a dense optical flow, shared by both network families."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Base grids are reused across calls: building one per warp costs as much as the sampling itself.
# Kept per CUDA stream: a grid is made, read and dropped in one stream's order only, so a batch
# on another stream (rife_cli.engine.cuda) never reads one still being written, nor one whose
# memory the caching allocator has handed out again. Keys: (stream, h, w, device, dtype).
_GRIDS: dict[tuple, torch.Tensor] = {}
MAX_GRIDS_PER_STREAM = 16


def drop_grids(stream: int | None = None, device: torch.device | None = None) -> None:
    """Forget the grids cached for one stream (its thread is done), or for every stream of a
    device (the input ended; each input gets new streams, so without this a batch of many files
    would keep every input's grids). Safe while a batch runs: a forward holds its own reference,
    and the allocator reuses the memory only in the order of the stream that made it."""
    for key in list(_GRIDS):
        where = key[3]
        if device is not None and (
            where.type != device.type or device.index is not None and where.index != device.index
        ):
            continue
        if stream is None or key[0] == stream:
            _GRIDS.pop(key, None)


def _stream_key(device: torch.device) -> int | None:
    """Which stream the grid is for: the current CUDA stream; None on the CPU (ordered by the
    calling thread itself, and the tensors read-only once made)."""
    if device.type != "cuda":
        return None
    return torch.cuda.current_stream(device).cuda_stream


def _base_grid(n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Under torch.compile the grid is built in the graph: a cache lookup there would be a guard
    # that fails once the cache fills, forcing a second compilation.
    compiling = torch.compiler.is_compiling()
    key = None if compiling else (_stream_key(device), h, w, device, dtype)
    grid = None if key is None else _GRIDS.get(key)
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
        if key is not None:
            # Each stream makes room among its own grids only: what another stream holds stays
            # its business (the allocator would reuse that memory in the other stream's order).
            mine = [k for k in list(_GRIDS) if k[0] == key[0]]
            if len(mine) >= MAX_GRIDS_PER_STREAM:
                for k in mine:
                    _GRIDS.pop(k, None)
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
