"""Host arrays to device tensors and back: BGR stacking, [0, 1] scaling, cropping, quantising.

Shared by both backends; the upload itself (plain on the CPU, page-locked and asynchronous on
CUDA) is the backend's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .colour import PlaneFormat, Planes, bgr_to_planes


def bgr_to_device(
    frames: Sequence[np.ndarray], upload: Callable[[np.ndarray], torch.Tensor]
) -> torch.Tensor:
    """N x 3 x H x W float32 in [0, 1] on the device from BGR (or gray, or BGRA) arrays."""
    arrs = []
    for f in frames:
        if f.ndim == 2:
            f = np.repeat(f[:, :, None], 3, axis=2)
        arrs.append(f[:, :, :3])
    x = upload(np.stack(arrs))
    dtype = arrs[0].dtype
    x = x.permute(0, 3, 1, 2)
    if dtype == np.uint8:
        return x.float() / 255.0
    if dtype == np.uint16:
        return x.float() / 65535.0
    return x.float()


def to_arrays(
    x: torch.Tensor | Sequence[torch.Tensor],
    h: int,
    w: int,
    dtype=np.uint8,
    rounding: str = "nearest",
) -> list[np.ndarray]:
    """Crop the padding and quantise integer types: to the nearest level (default) or truncating
    like the reference ("truncate"). Float frames pass unclipped, as the reference writes EXR.
    Several tensors (make's frames) come back in one transfer."""
    if not isinstance(x, torch.Tensor):
        x = torch.cat(list(x))
    return host_frames(quantise(x, h, w, dtype, rounding).cpu().numpy(), dtype)


def quantise(
    x: torch.Tensor, h: int, w: int, dtype=np.uint8, rounding: str = "nearest"
) -> torch.Tensor:
    """to_arrays' device half: cropped, quantised, laid out N x h x w x C and contiguous there
    (the copy down is then one block, and the host transposes nothing)."""
    x = x[:, :, :h, :w].float()
    if dtype in (np.uint8, np.uint16):
        top = 255.0 if dtype == np.uint8 else 65535.0
        x = x.clamp(0, 1).mul_(top)  # one temporary: a batch's frames are large
        x = x.round_() if rounding == "nearest" else x.floor_()
        x = x.to(torch.int32 if dtype == np.uint16 else torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous()


def host_frames(out: np.ndarray, dtype) -> list[np.ndarray]:
    """to_arrays' host half: N x h x w x C downloaded -> one array per frame, in `dtype`."""
    return [np.ascontiguousarray(a.astype(dtype, copy=False)) for a in out]


def download(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Device tensors on the host, all in one wait: on CUDA each is copied into page-locked memory
    asynchronously on the current stream (no pageable staging copy), then the stream is waited
    for once. Small tensors (per-frame flags, counts) can ride along with the frames this way."""
    if not tensors or tensors[0].device.type != "cuda":
        return [t.detach().cpu().numpy() for t in tensors]
    hosts = []
    for t in tensors:
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        hosts.append(host)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return [h.numpy() for h in hosts]


def to_planes(
    x: torch.Tensor | Sequence[torch.Tensor], h: int, w: int, fmt: PlaneFormat
) -> list[Planes]:
    """Made frames cropped and converted on their device to the encoder's planes (a third of
    BGR's bytes at 4:2:0), downloaded in one transfer."""
    if not isinstance(x, torch.Tensor):
        x = torch.cat(list(x))
    (out,) = download(bgr_to_planes(x[:, :, :h, :w], fmt))
    return host_planes(out, fmt, h, w)


def host_planes(out: np.ndarray, fmt: PlaneFormat, h: int, w: int) -> list[Planes]:
    """to_planes' host half: N packed plane buffers downloaded -> one Planes per frame (10-bit
    samples come down as int16, torch having no uint16 arithmetic, and are read as uint16)."""
    if out.dtype == np.int16:
        out = out.view(np.uint16)
    return [Planes(a, fmt.pix_fmt, w, h) for a in out]


def rows(x: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
    """x[idx] along the batch dimension: a view for a run of consecutive rows (the usual case),
    else a copy; either way in x's memory format."""
    if list(idx) == list(range(idx[0], idx[0] + len(idx))):
        return x[idx[0] : idx[0] + len(idx)]
    return torch.cat([x[i : i + 1] for i in idx])
