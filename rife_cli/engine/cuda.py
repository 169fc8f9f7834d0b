"""How the engine runs on CUDA: streams, page-locked transfers, device colour, graphs, TF32,
memory model.

Each batch worker thread has a stream of its own; everything a batch allocates is allocated, used
and freed on that stream (upload, network, download), so PyTorch's caching allocator only reuses a
block in that stream's order, and the warping grids are cached per stream (rife_cli.models.warp)
and forgotten when the thread ends or the input does. Only the weights, made on the default stream
before any batch, are shared: every batch's stream waits for the default stream first.

In the steady state the host waits for the device once per batch, in `download` (the frames and
their finite flags in one round trip); uploads, timesteps included, are page-locked and queued.

Not yet measured on a GPU (none was lent while this was written): the memory model's per-pixel
figures come from the CPU (see PAIR_BYTES_PER_PIXEL); an out-of-memory error is not fatal anyway,
the Interpolator halves the batch and goes on.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..models import transforms, warp
from . import arrays

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Peak bytes a forward pass holds per input pixel and pair, fp32, by (memory group, flow scale):
# the glibc heap's growth over a first forward of two pairs on the CPU, laid out as on CUDA
# (channels-last, no Winograd, native transposed convolutions, v3.x mirrored calls as one batch of
# 2N, 4.0/4.1's large-motion pass on the whole batch as on CUDA), one-time workspaces and
# fragmentation included. Groups: "v3", and each 4.x layout by name (rife_cli.models.ifnet_v4x:
# versions of one layout run the same code). `python scripts/memory_model.py --models all` at
# 640x352, networks built without weights files (memory does not depend on the weights' values),
# the largest of two runs (one for the groups marked so), rounded up. The heap's growth varies by
# up to 20% from run to run: MARGIN covers it.
PAIR_BYTES_PER_PIXEL: dict[tuple[str, float], float] = {
    # v3.6; the larger of this and the previous round's two runs
    ("v3", 0.25): 380.0,
    ("v3", 0.5): 450.0,
    ("v3", 1.0): 880.0,
    ("v3", 2.0): 2900.0,
    ("v3", 4.0): 9740.0,
    # 4.x layouts, 640x352, 2 pairs; scales 0.5 and 1 (1080p and --uhd 4K) for each, all five
    # for 4.0. A (group, scale) not here takes the largest figure at that scale.
    ("4.0", 0.25): 400.0,
    ("4.0", 0.5): 390.0,
    ("4.0", 1.0): 440.0,
    ("4.0", 2.0): 1240.0,
    ("4.0", 4.0): 3600.0,
    ("4.1", 0.25): 380.0,
    ("4.1", 0.5): 400.0,
    ("4.1", 1.0): 440.0,
    ("4.2", 0.5): 280.0,
    ("4.2", 1.0): 460.0,
    ("4.5", 0.5): 270.0,
    ("4.5", 1.0): 400.0,
    ("4.6", 0.5): 290.0,
    ("4.6", 1.0): 460.0,
    ("4.7", 0.5): 440.0,
    ("4.7", 1.0): 550.0,
    ("4.10", 0.5): 540.0,  # one run each from here
    ("4.10", 1.0): 810.0,
    ("4.12.lite", 0.5): 440.0,
    ("4.12.lite", 1.0): 570.0,
    ("4.13", 0.5): 510.0,
    ("4.13", 1.0): 720.0,
    ("4.14.lite", 0.5): 590.0,
    ("4.14.lite", 1.0): 720.0,
    ("4.15.lite", 0.5): 420.0,
    ("4.15.lite", 1.0): 550.0,
    ("4.20", 0.5): 490.0,
    ("4.20", 1.0): 760.0,
    ("4.21", 0.5): 700.0,
    ("4.21", 1.0): 950.0,
    ("4.22.lite", 0.5): 590.0,
    ("4.22.lite", 1.0): 770.0,
    ("4.25", 0.5): 580.0,
    ("4.25", 1.0): 880.0,
    ("4.25.lite", 0.5): 650.0,
    ("4.25.lite", 1.0): 670.0,
    ("4.25.heavy", 0.5): 580.0,
    ("4.25.heavy", 1.0): 890.0,
    ("4.25.heavy", 4.0): 6750.0,
    ("4.26.heavy", 0.5): 1060.0,
    ("4.26.heavy", 1.0): 1640.0,
}
# What a batch holds besides a forward's working memory, per pixel: each made frame, fp32, until
# the batch's download (12), and the download's cropped, quantised and NHWC copies (12 + 3 + 3);
# the pair's input frames, fp32, with their upload (12 + 3).
OUTPUT_BYTES_PER_PIXEL = 30
INPUT_BYTES_PER_PIXEL = 15
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


def pair_bytes(
    width: int, height: int, group: str, scale: float, precision: str, outputs: int = 1
) -> int:
    """Estimated peak device memory of one pair of a batch, margin included: its share of a
    forward pass (group: "v3" or a 4.x layout's name) and the frames it holds, `outputs` made
    frames among them, until the batch is downloaded."""
    per_px = PAIR_BYTES_PER_PIXEL.get((group, scale))
    if per_px is None:  # an unknown group: the largest figure at that scale
        per_px = max(v for (f, s), v in PAIR_BYTES_PER_PIXEL.items() if s == scale)
    if precision in ("fp16", "bf16"):
        per_px *= HALF_FACTOR
    per_px += INPUT_BYTES_PER_PIXEL + max(1, outputs) * OUTPUT_BYTES_PER_PIXEL
    return int(width * height * per_px * MARGIN)


def auto_batch(
    free_bytes: int,
    width: int,
    height: int,
    group: str,
    scale: float,
    precision: str,
    concurrent: int,
    outputs: int = 1,
) -> int:
    """Pairs per forward that the memory model fits in `free_bytes` for each of `concurrent`
    batches in flight, each pair with `outputs` made frames: at least 1, at most MAX_BATCH."""
    each = pair_bytes(width, height, group, scale, precision, outputs)
    return int(max(1, min(MAX_BATCH, free_bytes * USABLE // concurrent // max(1, each))))


def device_free_memory(device: torch.device) -> int:
    """Free device memory plus what PyTorch's allocator holds unused (it is ours to reuse)."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


class _Tf32Off:
    """TF32 off for cuDNN convolutions and matmuls while any thread is in a forward that asked
    (--precision fp32): on Ampere and newer both are on by default, so "fp32" would otherwise
    round inputs to 10 bits of mantissa. The flags are global to the process: counted, so that
    two batch threads overlapping leave them off until the last one is done, then as found."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[bool, bool] | None = None

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._users == 0:
                self._saved = (
                    torch.backends.cudnn.allow_tf32,
                    torch.backends.cuda.matmul.allow_tf32,
                )
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._saved is not None:
                    cudnn, matmul = self._saved
                    torch.backends.cudnn.allow_tf32 = cudnn
                    torch.backends.cuda.matmul.allow_tf32 = matmul


tf32_off = _Tf32Off()


class _ThreadStream:
    """A batch thread's stream; when the thread ends (its thread-local data is dropped), the
    warping grids cached for the stream go with it."""

    def __init__(self, stream):
        self.stream = stream
        weakref.finalize(self, warp.drop_grids, stream.cuda_stream)


class CudaBackend:
    """Streams per batch thread, page-locked transfers, YUV -> BGR on the device, the memory
    model, fixed batch shapes, TF32 off for fp32; CUDA graphs only when asked for (cuda_graphs).
    Its logic runs on the CPU device too (for the tests): transfers are then plain copies."""

    device_colour = (
        True  # video pictures come as YUV planes, converted here (rife_cli.engine.colour)
    )
    # Every forward of a run gets the batch's full shape (the Interpolator pads partial ones):
    # cuDNN's algorithm search, torch.compile and CUDA graphs then see one shape per input.
    fixed_batch = True

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
        # same batch (fixed_batch), each forward a step of its own and its outputs copied out.
        # Still behind an option: nothing of it is measured on a GPU yet.
        self.cuda_graphs = cuda_graphs
        self.lanes = 1
        self._free_memory = free_memory or functools.partial(device_free_memory, device)
        self._thread = threading.local()  # each calling thread's _ThreadStream
        self._plans: dict[tuple, int] = {}
        self._plans_lock = threading.Lock()
        self._pinned = device.type == "cuda"
        if device.type == "cuda":
            # cuDNN times its algorithms once per shape and keeps the fastest: with fixed batch
            # shapes a run has one shape per input (and per level of the network).
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
        current stream has finished). Small ones too (timesteps): a pageable upload would wait
        for the stream."""
        x = torch.from_numpy(np.ascontiguousarray(array))
        if self._pinned:
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def download(self, tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Device tensors as host arrays, with one wait: each copied into page-locked memory
        asynchronously on the current stream, then the stream waited for once. The arrays are
        views of that memory (PyTorch's pinned cache takes it back when they are dropped)."""
        if not self._pinned:
            return [t.detach().cpu().numpy() for t in tensors]
        return arrays.download(*tensors)

    def stream(self):
        """A calling thread's whole batch (upload, make, download) on a stream of its own, so
        that two threads' batches overlap transfers with compute. With CUDA graphs: the default
        stream, one batch at a time."""
        if self.cuda_graphs:
            return contextlib.nullcontext()
        mine = getattr(self._thread, "stream", None)
        if mine is None:
            mine = self._thread.stream = _ThreadStream(torch.cuda.Stream(self.device))
        mine.stream.wait_stream(torch.cuda.default_stream(self.device))
        return torch.cuda.stream(mine.stream)

    # ----- scheduling
    @property
    def concurrent_batches(self) -> int:
        """Two batches in flight, each on its own stream; one under torch.compile."""
        return 1 if self.compile else 2

    def batch_for(
        self,
        width: int,
        height: int,
        *,
        family: str,
        scale: float,
        precision: str,
        outputs: int = 1,
    ) -> int:
        """Pairs per forward for frames of this size, from the memory model and the memory free
        when first asked (later batches of the same size get the same answer, whatever the other
        batch in flight holds at that moment). family: the memory model's group."""
        key = (width, height, family, scale, precision, outputs)
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
                    outputs,
                )
            return self._plans[key]

    def forward_context(self, exact: bool = False):
        """exact (--precision fp32): TF32 off for the forward."""
        return tf32_off() if exact else contextlib.nullcontext()

    def run(self, forward: Forward, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor):
        if not self.cuda_graphs:
            return forward(a, b, t)
        # A replay reuses the memory of the previous one's outputs: each forward is a step of its
        # own, and what it returns is copied out. (Its shape is fixed: see fixed_batch.)
        torch.compiler.cudagraph_mark_step_begin()
        return forward(a, b, t).clone()

    def backed_off(self, batch: int) -> None:
        pass  # the Interpolator pads to the smaller batch from now on

    def close(self) -> None:
        """The input ended: its warping grids go (the next input's threads get new streams)."""
        warp.drop_grids(device=self.device)
