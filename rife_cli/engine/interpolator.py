"""The device-independent engine: which pairs and timesteps, in what precision, in what batches.

Frames are HxWx3 (or HxW) numpy arrays in OpenCV's BGR channel order, the order the networks were
trained on. uint8 and uint16 map to [0, 1] by their full range; float32 is taken as [0, 1] already.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelError, ResourceError, UsageError
from ..models import transforms
from ..models.cache import newest_cached_v4
from ..models.loading import ModelSource, load_network, resolve, resolve_default
from ..torchcompat import OutOfMemoryError
from . import colour
from .arrays import bgr_to_device, host_frames, host_planes, quantise, rows, to_arrays, to_planes
from .colour import PlaneFormat, Planes, Yuv420, bgr_to_planes

log = logging.getLogger("rife")

SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# v3.x bisection as the reference does it: stop within this distance of t, or after this many steps.
BISECT_TOLERANCE = 0.01
BISECT_STEPS = 8
# Deepest dyadic level a v3.x model is asked for directly (exp 8 = 256x).
MAX_DYADIC_LEVEL = 10


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: CUDA is not available on this machine (use --device cpu)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    elif dev.type != "cpu":
        raise UsageError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def pick_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def dyadic_level(t: Fraction) -> int | None:
    """L such that t = k / 2^L with k odd, or None when t is not dyadic."""
    den = t.denominator
    if den & (den - 1):
        return None
    return den.bit_length() - 1


def bisection_target(t: float) -> Fraction:
    """The dyadic timestep the reference's v3.x bisection for ratio t ends on."""
    lo, hi = Fraction(0), Fraction(1)
    mid = Fraction(1, 2)
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        if abs(float(mid) - t) <= BISECT_TOLERANCE:
            break
        if t > mid:
            lo = mid
        else:
            hi = mid
    return mid


def _parents(t: Fraction) -> tuple[Fraction, Fraction]:
    step = Fraction(1, t.denominator)
    return t - step, t + step


@dataclass
class Request:
    """Make the frame at timestep t between pair `pair` (indexes into the batch of pairs)."""

    pair: int
    t: Fraction


@dataclass
class Made:
    """A batch's made frames, still on the device and not yet checked (Interpolator.make_unchecked):
    one per request, and per request whether it is finite, computed on the device (None where
    nothing is checked: fp32). What a redo needs comes along: the pairs' frames and the requests."""

    frames: torch.Tensor  # N x 3 x Hp x Wp
    # N bools: the frame and the flows it came from are finite. False also marks 4.0/4.1's
    # large-motion pairs on CUDA, left NaN by the network for the redo (IFNetV4x "defer").
    finite: torch.Tensor | None
    a: torch.Tensor
    b: torch.Tensor
    requests: list[Request]


# Device out-of-memory errors, whatever raised them: PyTorch's allocator (torch.OutOfMemoryError),
# a CUDA call ("CUDA error: out of memory"), cuDNN or cuBLAS ("CUDNN_STATUS_ALLOC_FAILED").
_DEVICE_OOM = re.compile(r"out of memory|alloc_failed", re.IGNORECASE)
_OOM_TYPES = (OutOfMemoryError, torch.cuda.OutOfMemoryError)


def is_device_oom(exc: BaseException) -> bool:
    """Whether `exc` says the device ran out of memory (the batch can be halved and go on)."""
    if isinstance(exc, _OOM_TYPES):
        return True
    return isinstance(exc, RuntimeError) and _DEVICE_OOM.search(str(exc)) is not None


def is_host_oom(exc: BaseException) -> bool:
    """The host ran out (MemoryError, or PyTorch's "DefaultCPUAllocator: can't allocate")."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "alloc" in str(exc).lower()
    )


@dataclass
class Interpolator:
    """What to make and how, whatever the device: pairs and timesteps (v4 any t in one pass, v3.x
    dyadic trees level by level), the precision policy and its fp32 redo, batching with back-off
    on out-of-memory errors. The device's own work (uploads, streams, lanes, memory) is its
    backend's: rife_cli.engine.cpu or rife_cli.engine.cuda, only the one in use imported."""

    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    scale: float = 1.0
    # Pairs per forward. 0: automatic (on the CPU one per lane; on CUDA from the memory model).
    batch_size: int = 0
    offline: bool = False
    notice: Callable[[str], None] | None = None
    # A ready network instead of weights (it has `family` and `pad_base`), e.g. a test stand-in.
    network: torch.nn.Module | None = None
    compile: bool = False  # torch.compile the network (slow first call; slower on the CPU)
    # On CUDA, capture the compiled network as CUDA graphs ("reduce-overhead"; implies compile).
    # Off by default until measured on a GPU: see rife_cli.engine.cuda.
    cuda_graphs: bool = False
    # Zero-pad v3.x inner channels (90/45) to a multiple of this, for GPU tensor cores (0: off;
    # rife_cli.models.transforms.padding). A benchmark option until measured on a GPU.
    pad_channels: int = 0
    # 4.0-4.20: each block also run on the reversed pair, the two averaged (model-spec-v4x.md §4).
    ensemble: bool = False
    # The version a weights file is taken as where its tensors fit several (--model-version).
    model_version: str | None = None
    # CPU lanes (rife_cli.engine.cpu): 0 = one per usable core up to cpus.MAX_LANES; 1 = none.
    lanes: int = 0
    # The reference's layout and arithmetic, for the benchmark baseline (rife_cli.bench): NCHW
    # tensors instead of channels-last, the untransformed network (rife_cli.models.transforms);
    # on the CPU the C library's default allocator and the mirrored v3.x calls one after the other.
    reference_like: bool = False
    source: ModelSource = field(init=False)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise UsageError(
                f"--scale {self.scale}: use one of {', '.join(str(s) for s in SCALES)}"
            )
        self.torch_device = pick_device(self.device)
        if self.cuda_graphs:
            if self.torch_device.type != "cuda":
                raise UsageError("--cuda-graphs is for CUDA devices")
            self.compile = True
        self.precision = pick_precision(self.precision, self.torch_device)
        if self.precision == "fp16" and self.torch_device.type == "cpu":
            raise UsageError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")
        # Before the weights are loaded: the CPU backend sets the host allocator up first.
        self.backend = self._make_backend()
        if self.network is not None:
            net = self.network.eval()
            self.source = ModelSource(Path("<network>"), self.model or type(net).__name__, True)
        else:
            self.source = resolve(self.model, self.offline, self.notice)
            net = load_network(self.source, self.model_version, self.ensemble, self.notice)
        self.family: str = net.family
        # The memory model's figures are per 4.x layout (versions of one run the same code).
        self.memory_group: str = getattr(getattr(net, "layout", None), "name", None) or net.family
        # Made frames a pair holds until its batch is downloaded (the memory model counts them):
        # the caller says how many it will ask for (expect_outputs).
        self.outputs_per_pair = 1
        # The speed-ups this device's backend takes, applied once to the plain network.
        net = transforms.apply(net, self.torch_device, self.backend.tuning(self.pad_channels))
        # Channels-last lets oneDNN / cuDNN pick their fast convolution paths: measured 1.3-1.45x on
        # this project's 2-core CPU in fp32 at 720p (scripts/bench.py), results within float noise.
        self.channels_last = not self.reference_like
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = self.backend.prepare(net)
        # 4.0/4.1 on CUDA leave their large-motion pairs NaN ("defer": no wait for the device);
        # the redo runs them through the same network in its sync-free "select" form.
        self._redo_net = self.net
        self._defers = False
        form = getattr(self.net, "large_motion_form", None)
        if form is not None and form(self.torch_device) == "defer":
            self._redo_net = copy.copy(self.net)  # shares the modules; its own form
            self._redo_net.large_motion = "select"
            self._defers = True
        self._forward_net = (
            torch.compile(
                self.net, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None
            )
            if self.compile
            else self.net
        )
        self.lanes = self.backend.lanes
        self.pad_to = max(net.pad_base, int(net.pad_base / self.scale))
        self.fp32_fallbacks = 0  # frames redone in fp32: NaN/Inf in half, or deferred large motion
        self.oom_backoffs = 0  # times a batch was halved after an out-of-memory error
        self._max_batch: int | None = None  # the cap those halvings set
        self._count_lock = threading.Lock()  # make() may run in two threads (concurrent_batches)
        if not self.batch_size and self.torch_device.type == "cpu":
            self.batch_size = self.backend.batch_for(0, 0)

    def _make_backend(self):
        if self.torch_device.type == "cuda":
            from .cuda import CudaBackend

            return CudaBackend(
                self.torch_device,
                compile=self.compile,
                cuda_graphs=self.cuda_graphs,
                reference_like=self.reference_like,
            )
        from .cpu import CpuBackend

        return CpuBackend(
            self.torch_device,
            lanes=self.lanes,
            compile=self.compile,
            reference_like=self.reference_like,
        )

    # ----- capabilities
    @property
    def any_timestep(self) -> bool:
        return self.family == "v4"

    def check_timesteps(self, ts: Sequence[Fraction]) -> None:
        if self.any_timestep:
            return
        for t in ts:
            level = dyadic_level(t)
            if level is None or level > MAX_DYADIC_LEVEL:
                raise ModelError(
                    f"model {self.source.label} ({self.family}.x family) makes only midpoints "
                    f"(t = k/2^n) and cannot make t = {t}; use --model v4.0"
                )

    @property
    def concurrent_batches(self) -> int:
        """How many batches a caller may have in make() at once, from as many threads: two where
        a second one keeps the hardware busy while the first one's frames come and go (CPU lanes
        then take the next batch's pairs instead of waiting at the end of a batch; on CUDA each
        thread's work goes to a stream of its own, see `stream`), one under torch.compile."""
        return self.backend.concurrent_batches

    def stream(self):
        """Context for a calling thread's whole batch (upload, make, download): on CUDA a stream
        of that thread's own, so that two threads' batches overlap transfers with compute; all
        of a batch's tensors live on it. Nothing on the CPU."""
        return self.backend.stream()

    def close(self) -> None:
        """The input ended: stop the CPU lanes' threads (also done when the Interpolator is
        garbage-collected), forget CUDA streams' warping grids. The Interpolator stays usable:
        what it needs starts again when next needed."""
        self.backend.close()

    def expect_outputs(self, per_pair: int) -> None:
        """How many frames each pair of a batch will be asked for, at most (--multi 8: 7): they
        stay on the device until the batch is downloaded, so the memory model counts them."""
        self.outputs_per_pair = max(1, int(per_pair))

    def batch_for(self, width: int, height: int) -> int:
        """Pairs per forward for frames of this size: --batch-size, else the backend's choice (one
        per CPU lane; on CUDA the memory model's), at most half the last batch that ran out of
        memory."""
        n = self.batch_size
        if not n:
            n = self.backend.batch_for(
                _ceil_to(width, self.pad_to),
                _ceil_to(height, self.pad_to),
                family=self.memory_group,
                scale=self.scale,
                precision=self.precision,
                outputs=self.outputs_per_pair,
            )
        cap = self._max_batch
        return min(n, cap) if cap else n

    # ----- tensors in and out
    @property
    def device_colour(self) -> bool:
        """Whether video pictures should come as YUV planes, converted to BGR on the device
        (rife_cli.engine.colour): on CUDA, where the host's conversion would limit the pipeline."""
        return self.backend.device_colour

    def to_tensor(self, frames: Sequence[np.ndarray | Yuv420]) -> torch.Tensor:
        """Stack BGR frames (or YUV pictures, converted on the device) into an
        N x 3 x Hp x Wp float32 batch on the device, zero-padded."""
        upload = self.backend.upload
        if all(isinstance(f, np.ndarray) for f in frames):
            x = bgr_to_device(frames, upload)
        else:
            x = torch.cat(
                [
                    bgr_to_device([f], upload)
                    if isinstance(f, np.ndarray)
                    else colour.yuv420_to_bgr(f, self._samples(f))
                    for f in frames
                ]
            )
        h, w = x.shape[2:]
        x = F.pad(x, (0, _ceil_to(w, self.pad_to) - w, 0, _ceil_to(h, self.pad_to) - h))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _samples(self, pic: Yuv420) -> torch.Tensor:
        """A YUV picture's samples on the device: uploaded, or where they already are there
        (NVDEC's, rife_cli.video.nvdec: made on the default stream) marked as used on this
        batch's stream, so that PyTorch's allocator does not hand their memory to the next
        picture before the batch has read them."""
        data = pic.data
        if not isinstance(data, torch.Tensor):
            return self.backend.upload(_signed(data))
        data = data.to(self.torch_device)
        if data.is_cuda:
            data.record_stream(torch.cuda.current_stream(data.device))
        return data

    def to_pair_tensors(
        self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and second frames of pairs as two batches (to_tensor), each distinct frame
        converted and moved to the device once: consecutive pairs share a frame."""
        where: dict[int, int] = {}
        frames: list[np.ndarray] = []
        for f in (*firsts, *seconds):
            if id(f) not in where:
                where[id(f)] = len(frames)
                frames.append(f)
        x = self.to_tensor(frames)
        return rows(x, [where[id(f)] for f in firsts]), rows(x, [where[id(f)] for f in seconds])

    @staticmethod
    def to_arrays(
        x: torch.Tensor | Sequence[torch.Tensor],
        h: int,
        w: int,
        dtype=np.uint8,
        rounding: str = "nearest",
        planes: PlaneFormat | None = None,
    ) -> list[np.ndarray] | list[Planes]:
        """Made frames on the host: BGR arrays of `dtype` (rife_cli.engine.arrays.to_arrays), or
        with `planes` the encoder's YUV planes, converted on the device (to_planes)."""
        if planes is not None:
            return to_planes(x, h, w, planes)
        return to_arrays(x, h, w, dtype, rounding)

    # ----- the network
    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.torch_device.type, dtype=dtype)

    def _net_call(
        self, autocast: bool, redo: bool, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor
    ):
        net = self._redo_net if redo else self._forward_net
        with (
            torch.inference_mode(),
            self.backend.forward_context(exact=self.precision == "fp32"),
            self._autocast() if autocast else contextlib.nullcontext(),
        ):
            if self.family == "v4":
                out = net(a, b, t, self.scale)
            else:
                out = net(a, b, self.scale)
            return out.float()

    def _run(self, a, b, t, autocast: bool, redo: bool = False) -> torch.Tensor:
        return self.backend.run(functools.partial(self._net_call, autocast, redo), a, b, t)

    def _forward(
        self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, exact: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward of a batch, and per pair whether its frame is finite (None when nothing is
        checked: fp32 where no large-motion pair is deferred, or exact = the fp32 redo). The flag
        stays on the device: reading it here would make the host wait for the forward; it comes
        down with the frames (download)."""
        if exact:
            return self._run(a, b, t, autocast=False, redo=True), None
        if self.precision == "fp32" and not self._defers:
            return self._run(a, b, t, autocast=False), None
        out = self._run(a, b, t, autocast=self.precision != "fp32")
        with torch.inference_mode():
            return out, torch.isfinite(out).flatten(1).all(1)

    def _batched(
        self,
        n: int,
        gather: Callable[[int, int], tuple[torch.Tensor, ...]],
        h: int,
        w: int,
        exact: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forwards over n pairs, batch_for(w, h) at a time, each batch gathered only when its
        turn comes (gather(i, j): pairs i to j - 1's first frames, second frames and t on the
        device); the frames and their finite flags (see _forward). Where the backend wants fixed
        shapes (CUDA), a short batch is padded to the full one by repeating its last pair. Out of
        device memory while gathering or in a forward, the batch is halved and the run goes on,
        down to one pair."""
        out: torch.Tensor | None = None
        ok: torch.Tensor | None = None
        i = 0
        while i < n:
            full = self.batch_for(w, h)
            k = min(full, n - i)
            try:
                a, b, t = gather(i, i + k)
                if self.backend.fixed_batch and k < full:
                    a, b, t = (self._pad_rows(x, full) for x in (a, b, t))
                frames, good = self._forward(a, b, t, exact)
                if k == n:  # the whole request in one forward (the usual case): no copy
                    out, ok = frames[:k], None if good is None else good[:k]
                elif out is None:
                    layout = torch.channels_last if self.channels_last else torch.contiguous_format
                    out = torch.empty(
                        (n, *frames.shape[1:]),
                        dtype=frames.dtype,
                        device=frames.device,
                        memory_format=layout,
                    )
                    ok = None if good is None else good.new_empty(n)
                if k < n:
                    with torch.inference_mode():
                        out[i : i + k] = frames[:k]
                        if ok is not None:
                            ok[i : i + k] = good[:k]
            except (RuntimeError, MemoryError) as exc:
                self._out_of_memory(exc, k, w, h)
                self._back_off(k)
                continue
            finally:
                a = b = t = frames = good = None  # a retry starts with this batch's memory free
            i += k
        return out, ok

    def _pad_rows(self, x: torch.Tensor, full: int) -> torch.Tensor:
        pad = full - x.shape[0]
        x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _out_of_memory(self, exc: BaseException, k: int, w: int, h: int) -> None:
        """Returns if `exc` is the device's out-of-memory error and a smaller batch may fit;
        raises a ResourceError for what halving cannot help, else re-raises `exc`."""
        if is_device_oom(exc):
            if k > 1:
                return
            raise ResourceError(
                f"out of GPU memory for one pair of {w}x{h}; try --scale 0.5 (--uhd) or a "
                "smaller model"
            ) from None
        if is_host_oom(exc):
            raise ResourceError(
                f"out of memory for {k} pair(s) of {w}x{h}; try --scale 0.5 or a smaller "
                "--batch-size"
            ) from None
        raise exc

    def _back_off(self, batch: int) -> None:
        half = max(1, batch // 2)
        with self._count_lock:
            self.oom_backoffs += 1
            if self._max_batch is None or half < self._max_batch:
                self._max_batch = half
        self.backend.backed_off(half)
        log.warning("out of GPU memory with %d pairs per forward: going on with %d", batch, half)

    def make_unchecked(
        self, a: torch.Tensor, b: torch.Tensor, requests: Sequence[Request], exact: bool = False
    ) -> Made:
        """The frames for every request, batched across pairs and timesteps, left on the device
        with their finite flags: nothing here waits for the device. exact: in fp32, unchecked
        (the redo of frames that half precision made NaN/Inf)."""
        requests = list(requests)
        self.check_timesteps([r.t for r in requests])
        h, w = a.shape[2:]
        if self.family == "v4":
            pairs = [r.pair for r in requests]
            ts = np.array([float(r.t) for r in requests], np.float32)

            def gather(i: int, j: int):
                # page-locked and queued on CUDA: a pageable upload would wait for the stream
                t = self.backend.upload(ts[i:j])
                return rows(a, pairs[i:j]), rows(b, pairs[i:j]), t

            out, ok = self._batched(len(requests), gather, h, w, exact)
            return Made(out, ok, a, b, requests)
        return self._make_dyadic(a, b, requests, exact)

    def _make_dyadic(self, a, b, requests: list[Request], exact: bool) -> Made:
        # Every needed node of each pair's midpoint tree, made level by level: a level's midpoints
        # are independent, so they run as one batch; parents stay unquantised float tensors. A
        # node is finite if its frame and both parents are (NaN parents make wrong children).
        made: dict[tuple[int, Fraction], tuple[torch.Tensor, torch.Tensor | None]] = {}
        levels: dict[int, set[tuple[int, Fraction]]] = {}
        todo = [(r.pair, r.t) for r in requests]
        while todo:
            node = todo.pop()
            pair, t = node
            if t in (0, 1) or any(node in s for s in levels.values()):
                continue
            levels.setdefault(dyadic_level(t), set()).add(node)
            todo += [(pair, p) for p in _parents(t)]

        def get(pair: int, t: Fraction) -> torch.Tensor:
            if t == 0:
                return a[pair : pair + 1]
            if t == 1:
                return b[pair : pair + 1]
            return made[(pair, t)][0]

        def finite(pair: int, t: Fraction) -> torch.Tensor | None:
            return None if t in (0, 1) else made[(pair, t)][1]

        h, w = a.shape[2:]
        for level in sorted(levels):
            nodes = sorted(levels[level])

            def gather(i: int, j: int, nodes=nodes):
                lo = torch.cat([get(p, _parents(t)[0]) for p, t in nodes[i:j]])
                hi = torch.cat([get(p, _parents(t)[1]) for p, t in nodes[i:j]])
                # On the frames' device, made there (no upload).
                return lo, hi, torch.zeros(j - i, device=lo.device)

            out, ok = self._batched(len(nodes), gather, h, w, exact)
            with torch.inference_mode():
                for i, (p, t) in enumerate(nodes):
                    flag = None
                    if ok is not None:
                        flag = ok[i : i + 1]
                        for parent in _parents(t):
                            up = finite(p, parent)
                            flag = flag if up is None else flag & up
                    made[(p, t)] = (out[i : i + 1], flag)
        with torch.inference_mode():
            frames = torch.cat([get(r.pair, r.t) for r in requests])
            flags = [finite(r.pair, r.t) for r in requests]
            ok_all = None if any(f is None for f in flags) else torch.cat(flags)
        return Made(frames, ok_all, a, b, requests)

    def make(
        self, a: torch.Tensor, b: torch.Tensor, requests: Sequence[Request]
    ) -> list[torch.Tensor]:
        """Frames (1 x 3 x Hp x Wp each) for every request, batched across pairs and timesteps,
        those half precision made NaN/Inf redone in fp32. For callers that keep the frames on the
        device; it waits for the device once to check them (the pipeline downloads instead:
        frames_for)."""
        if not requests:
            return []
        made = self.make_unchecked(a, b, requests)
        frames = made.frames
        if made.finite is not None:
            bad = (~made.finite).nonzero().flatten()
            if bad.numel():
                redo = self._redo(made, bad.tolist())
                with torch.inference_mode():
                    frames = frames.index_copy(0, bad, redo.frames)
        return [frames[i : i + 1] for i in range(len(made.requests))]

    def _redo(self, made: Made, bad: list[int]) -> Made:
        """Requests `bad` of `made` made again in fp32 (and counted in fp32_fallbacks)."""
        with self._count_lock:
            self.fp32_fallbacks += len(bad)
        return self.make_unchecked(made.a, made.b, [made.requests[i] for i in bad], exact=True)

    def download(
        self,
        made: Made,
        h: int,
        w: int,
        dtype=np.uint8,
        rounding: str = "nearest",
        planes: PlaneFormat | None = None,
    ) -> list[np.ndarray] | list[Planes]:
        """A batch's frames on the host, with one wait for the device: BGR arrays (cropped to
        h x w, quantised as to_arrays does) or, with `planes`, the encoder's YUV planes converted
        on the device (to_planes). The frames and their finite flags come down together; frames
        that half precision made NaN/Inf are then redone in fp32 and come down in a second round
        trip (rare)."""
        if not made.requests:
            return []

        def on_device(frames: torch.Tensor) -> torch.Tensor:
            if planes is not None:
                return bgr_to_planes(frames[:, :, :h, :w], planes)
            return quantise(frames, h, w, dtype, rounding)

        send = [on_device(made.frames)]
        if made.finite is not None:
            send.append(made.finite)
        got = self.backend.download(send)
        arrays = got[0]
        if made.finite is not None and not got[1].all():
            bad = np.flatnonzero(~got[1]).tolist()
            redo = self._redo(made, bad)
            (fixed,) = self.backend.download([on_device(redo.frames)])
            arrays = arrays.copy()
            arrays[bad] = fixed
        if planes is not None:
            return host_planes(arrays, planes, h, w)
        return host_frames(arrays, dtype)

    def frames_for(
        self,
        firsts: Sequence[np.ndarray | Yuv420],
        seconds: Sequence[np.ndarray | Yuv420],
        requests: Sequence[Request],
        h: int,
        w: int,
        dtype=np.uint8,
        rounding: str = "nearest",
        planes: PlaneFormat | None = None,
    ) -> list[np.ndarray] | list[Planes]:
        """One batch, pictures in and frames out (BGR arrays, or the encoder's `planes`): the pairs'
        pictures uploaded, the requests made, the frames downloaded (download), all in the calling thread (on CUDA inside its stream:
        see `stream`). Out of device memory at any of those stages (upload, gathers, the batch's
        outputs, the download), the batch is halved and goes on, down to one pair."""
        requests = list(requests)
        if not requests:
            return []
        try:
            return self._frames_once(firsts, seconds, requests, h, w, dtype, rounding, planes)
        except (RuntimeError, MemoryError) as exc:
            self._out_of_memory(exc, len(firsts), w, h)
        # Outside the handler: the failed attempt's tensors are freed with its traceback.
        self._back_off(min(len(firsts), self.batch_for(w, h)))
        step = self.batch_for(w, h)
        by_pair: dict[int, list[int]] = {}
        for n, r in enumerate(requests):
            by_pair.setdefault(r.pair, []).append(n)
        out: list[np.ndarray | None] = [None] * len(requests)
        for lo in range(0, len(firsts), step):
            hi = min(lo + step, len(firsts))
            which = [n for p in range(lo, hi) for n in by_pair.get(p, [])]
            part = self.frames_for(
                firsts[lo:hi],
                seconds[lo:hi],
                [Request(requests[n].pair - lo, requests[n].t) for n in which],
                h,
                w,
                dtype,
                rounding,
                planes,
            )
            for n, arr in zip(which, part):
                out[n] = arr
        return out

    def _frames_once(self, firsts, seconds, requests, h, w, dtype, rounding, planes):
        a, b = self.to_pair_tensors(firsts, seconds)
        made = self.make_unchecked(a, b, requests)
        return self.download(made, h, w, dtype, rounding, planes)

    # ----- conveniences for callers holding two frames
    def interpolate(
        self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float | Fraction]
    ) -> list[np.ndarray]:
        """Frames at the given timesteps between two BGR frames, in the input dtype."""
        ts = [Fraction(t).limit_denominator(1 << 20) for t in timesteps]
        for t in ts:
            if not 0 < t < 1:
                raise UsageError(f"timestep {t} is outside (0, 1)")
        h, w = frame0.shape[:2]
        with self.stream():
            reqs = [Request(0, t) for t in ts]
            return self.frames_for([frame0], [frame1], reqs, h, w, frame0.dtype)

    def timestep_for_ratio(self, ratio: float) -> Fraction:
        """The timestep a ratio is made at: itself for v4.0, the bisection's end for v3.x."""
        if not 0 < ratio < 1:
            raise UsageError(f"--ratio {ratio} is outside (0, 1)")
        if self.any_timestep:
            return Fraction(ratio).limit_denominator(1 << 20)
        return bisection_target(ratio)

    @property
    def description(self) -> str:
        return f"{self.source.label} ({self.family}) on {self.torch_device} {self.precision}"


def _signed(data: np.ndarray) -> np.ndarray:
    """16-bit samples as int16, the same bits (uint16 has few CUDA kernels); others as they are."""
    return data.view(np.int16) if data.dtype == np.uint16 else data


def _ceil_to(n: int, base: int) -> int:
    return -(-n // base) * base


def interpolator_for(need_any_timestep: bool, model: str | None = None, **kwargs) -> Interpolator:
    """An Interpolator for a timing: when it needs timesteps a v3.x model cannot make and the user
    named no model, the newest 4.x model in the cache is used, else v4.0 (said through `notice`)."""
    if need_any_timestep and resolve_default(model) is None:
        model, why = newest_cached_v4()
        if kwargs.get("notice"):
            kwargs["notice"](f"this timing needs any timestep; using model {model} ({why})")
    return Interpolator(model=model, **kwargs)


def load_model(model: str | None = None, **kwargs) -> Interpolator:
    """Shorthand for Interpolator(model, ...)."""
    return Interpolator(model=model, **kwargs)
