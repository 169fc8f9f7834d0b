"""How the engine runs on CUDA: streams, page-locked uploads, device colour, graphs, memory model.

Each batch worker thread has a stream of its own; everything a batch allocates is allocated, used
and freed on that stream (upload, network, download), so PyTorch's caching allocator only reuses a
block in that stream's order, and the warping grids are cached per stream (rife_cli.models.warp).
Only the weights, made on the default stream before any batch, are shared: every batch's stream
waits for the default stream first.

Not yet measured on a GPU (none was lent while this was written): the memory model's per-pixel
figures come from the CPU (see PAIR_BYTES_PER_PIXEL); an out-of-memory error is not fatal anyway,
the Interpolator halves the batch and goes on.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable

import numpy as np
import torch

from ..models import transforms

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Peak bytes a forward pass holds per input pixel and pair, fp32, by (family, flow scale): the
# glibc heap's growth over a first forward of two pairs on the CPU, laid out as on CUDA
# (channels-last, no Winograd, native transposed convolutions, v3.x mirrored calls as one batch of
# 2N), inputs, one-time workspaces and fragmentation included. `python scripts/memory_model.py`
# at 640x352, rounded up over two runs (v3.6 at scale 1: 753-879 for 1, 2 and 4 pairs, 805 for one
# pair at 1280x704). v4's large-motion pass (the head again at twice the scales, for the pairs that
# need it) is not in these figures: the margin below has to cover it.
PAIR_BYTES_PER_PIXEL: dict[tuple[str, float], float] = {
    ("v3", 0.25): 360.0,
    ("v3", 0.5): 400.0,
    ("v3", 1.0): 880.0,
    ("v3", 2.0): 2900.0,
    ("v3", 4.0): 8400.0,
    ("v4", 0.25): 280.0,
    ("v4", 0.5): 280.0,
    ("v4", 1.0): 410.0,
    ("v4", 2.0): 870.0,
    ("v4", 4.0): 3930.0,
}
# fp16/bf16: convolutions' activations in half, warps, flows and block outputs stay fp32. Taken
# as 0.75 of fp32 until measured on a GPU (a half-only estimate would be 0.5).
HALF_FACTOR = 0.75
# Safety margin over the estimate (cuDNN workspaces, fragmentation, the allocator's rounding).
MARGIN = 1.5
# Share of the free memory the batches may take; the rest is left for the CUDA context's growth,
# the decoder (NVDEC) and the encoder (NVENC).
USABLE = 0.8
# Pairs per forward at most (an assumption until measured: by then a 1080p batch should fill any
# GPU, and more would only add latency and memory).
MAX_BATCH = 16


def pair_bytes(width: int, height: int, family: str, scale: float, precision: str) -> int:
    """Estimated peak device memory of one pair in a forward pass, margin included."""
    per_px = PAIR_BYTES_PER_PIXEL.get((family, scale))
    if per_px is None:  # an unknown family: the largest figure at that scale
        per_px = max(v for (f, s), v in PAIR_BYTES_PER_PIXEL.items() if s == scale)
    if precision in ("fp16", "bf16"):
        per_px *= HALF_FACTOR
    return int(width * height * per_px * MARGIN)


def auto_batch(
    free_bytes: int,
    width: int,
    height: int,
    family: str,
    scale: float,
    precision: str,
    concurrent: int,
) -> int:
    """Pairs per forward that the memory model fits in `free_bytes` for each of `concurrent`
    batches in flight: at least 1, at most MAX_BATCH."""
    each = pair_bytes(width, height, family, scale, precision)
    return int(max(1, min(MAX_BATCH, free_bytes * USABLE // concurrent // max(1, each))))


def device_free_memory(device: torch.device) -> int:
    """Free device memory plus what PyTorch's allocator holds unused (it is ours to reuse)."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


class CudaBackend:
    """Streams per batch thread, page-locked uploads, YUV -> BGR on the device, the memory model;
    CUDA graphs only when asked for (cuda_graphs)."""

    device_colour = (
        True  # video pictures come as YUV planes, converted here (rife_cli.engine.colour)
    )

    def __init__(
        self,
        device: torch.device,
        *,
        compile: bool = False,
        cuda_graphs: bool = False,
        free_memory: Callable[[], int] | None = None,
        reference_like: bool = False,
    ):
        self.device = device
        self.compile = compile
        self.reference_like = reference_like
        # CUDA graphs (torch.compile "reduce-overhead") replay fixed shapes and addresses: made
        # safe here by one batch at a time on the default stream, every forward padded to the
        # same batch, each forward a step of its own and its outputs copied out. Still behind an
        # option: v4's large-motion pass is a data-dependent branch (a graph break, and another
        # graph per count of large-motion pairs), and nothing of it is measured on a GPU yet.
        self.cuda_graphs = cuda_graphs
        self.lanes = 1
        self._free_memory = free_memory or functools.partial(device_free_memory, device)
        self._thread = threading.local()  # each calling thread's stream
        self._plans: dict[tuple, int] = {}
        self._plans_lock = threading.Lock()
        self._graph_batch: int | None = None
        if device.type == "cuda":
            # cuDNN times its algorithms once per shape and keeps the fastest: the shapes of a
            # run repeat (one frame size, a few batch sizes).
            torch.backends.cudnn.benchmark = True

    def tuning(self, pad_channels: int = 0) -> transforms.Tuning:
        """On CUDA the v3.x mirrored calls go as one batch of 2N (as the reference: one after the
        other); the CPU rewrites (phase-split transposed convolutions, Winograd) stay off, as cuDNN
        has its own."""
        mirrored = "serial" if self.reference_like else "batch"
        return transforms.Tuning(
            phase_deconv=False, winograd=False, mirrored=mirrored, pad_channels=pad_channels
        )

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the weights are there before any stream reads
        return net

    # ----- transfers
    def upload(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the device, copied from page-locked memory asynchronously (the host
        goes on queueing work; PyTorch's pinned-memory cache keeps the block until the copy on the
        current stream has finished)."""
        x = torch.from_numpy(np.ascontiguousarray(array)).pin_memory()
        return x.to(self.device, non_blocking=True)

    def stream(self):
        """A calling thread's whole batch (upload, make, download) on a stream of its own, so
        that two threads' batches overlap transfers with compute. With CUDA graphs: the default
        stream, one batch at a time."""
        if self.cuda_graphs:
            return contextlib.nullcontext()
        s = getattr(self._thread, "stream", None)
        if s is None:
            s = self._thread.stream = torch.cuda.Stream(self.device)
        s.wait_stream(torch.cuda.default_stream(self.device))
        return torch.cuda.stream(s)

    # ----- scheduling
    @property
    def concurrent_batches(self) -> int:
        """Two batches in flight, each on its own stream; one under torch.compile."""
        return 1 if self.compile else 2

    def batch_for(self, width: int, height: int, *, family: str, scale: float, precision: str):
        """Pairs per forward for frames of this size, from the memory model and the memory free
        when first asked (later batches of the same size get the same answer, whatever the other
        batch in flight holds at that moment)."""
        key = (width, height, family, scale, precision)
        with self._plans_lock:
            if key not in self._plans:
                self._plans[key] = auto_batch(
                    self._free_memory(),
                    width,
                    height,
                    family,
                    scale,
                    precision,
                    self.concurrent_batches,
                )
            return self._plans[key]

    def forward_context(self):
        return contextlib.nullcontext()

    def run(self, forward: Forward, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor):
        if not self.cuda_graphs:
            return forward(a, b, t)
        # One shape for every forward (the first batch's size, or larger): no recompilation for
        # a short last batch or a dyadic level with fewer nodes. Padding repeats the last pair.
        n = a.shape[0]
        if self._graph_batch is None or n > self._graph_batch:
            self._graph_batch = n
        pad = self._graph_batch - n
        if pad:
            a, b, t = (torch.cat([x, x[-1:].expand(pad, *x.shape[1:])]) for x in (a, b, t))
        # A replay reuses the memory of the previous one's outputs: each forward is a step of its
        # own, and what it returns is copied out.
        torch.compiler.cudagraph_mark_step_begin()
        return forward(a, b, t)[:n].clone()

    def backed_off(self, batch: int) -> None:
        """After an out-of-memory error: the graphs' fixed batch follows the smaller one."""
        if self._graph_batch is not None and self._graph_batch > batch:
            self._graph_batch = batch

    def close(self) -> None:
        pass
