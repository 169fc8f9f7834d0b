"""The device-independent engine: which pairs and timesteps, in what precision, in what batches.

Frames are HxWx3 (or HxW) numpy arrays in OpenCV's BGR channel order, the order the networks were
trained on. uint8 and uint16 map to [0, 1] by their full range; float32 is taken as [0, 1] already.
"""

from __future__ import annotations

import contextlib
import functools
import logging
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
from . import colour
from .arrays import bgr_to_device, rows, to_arrays, to_planes
from .colour import PlaneFormat, Planes, Yuv420

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
        # The speed-ups this device's backend takes, applied once to the plain network.
        net = transforms.apply(net, self.torch_device, self.backend.tuning(self.pad_channels))
        # Channels-last lets oneDNN / cuDNN pick their fast convolution paths: measured 1.3-1.45x on
        # this project's 2-core CPU in fp32 at 720p (scripts/bench.py), results within float noise.
        self.channels_last = not self.reference_like
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = self.backend.prepare(net)
        self._forward_net = (
            torch.compile(
                self.net, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None
            )
            if self.compile
            else self.net
        )
        self.lanes = self.backend.lanes
        self.pad_to = max(net.pad_base, int(net.pad_base / self.scale))
        self.fp32_fallbacks = 0  # pairs redone in fp32 because half precision gave NaN/Inf
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
        """Stop the CPU lanes' threads (also done when the Interpolator is garbage-collected). The
        Interpolator stays usable: they start again when next needed."""
        self.backend.close()

    def batch_for(self, width: int, height: int) -> int:
        """Pairs per forward for frames of this size: --batch-size, else the backend's choice (one
        per CPU lane; on CUDA the memory model's), at most half the last batch that ran out of
        memory."""
        n = self.batch_size
        if not n:
            n = self.backend.batch_for(
                _ceil_to(width, self.pad_to),
                _ceil_to(height, self.pad_to),
                family=self.family,
                scale=self.scale,
                precision=self.precision,
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
                    else colour.yuv420_to_bgr(f, upload(_signed(f.data)))
                    for f in frames
                ]
            )
        h, w = x.shape[2:]
        x = F.pad(x, (0, _ceil_to(w, self.pad_to) - w, 0, _ceil_to(h, self.pad_to) - h))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

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

    def _net_call(self, autocast: bool, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor):
        with (
            torch.inference_mode(),
            self.backend.forward_context(),
            self._autocast() if autocast else contextlib.nullcontext(),
        ):
            if self.family == "v4":
                out = self._forward_net(a, b, t, self.scale)
            else:
                out = self._forward_net(a, b, self.scale)
            return out.float()

    def _run(self, a, b, t, autocast: bool) -> torch.Tensor:
        return self.backend.run(functools.partial(self._net_call, autocast), a, b, t)

    def _forward(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One forward of a batch, pairs that half precision made NaN/Inf redone in fp32."""
        out = self._run(a, b, t, autocast=True)
        if self.precision != "fp32":
            bad = ~torch.isfinite(out).flatten(1).all(1)
            if bool(bad.any()):
                idx = bad.nonzero().flatten()
                redo = self._run(a[idx], b[idx], t[idx], autocast=False)
                with torch.inference_mode():
                    out = out.index_copy(0, idx, redo)
                with self._count_lock:
                    self.fp32_fallbacks += int(idx.numel())
        return out

    def _batched(
        self, n: int, gather: Callable[[int, int], tuple[torch.Tensor, ...]], h: int, w: int
    ) -> torch.Tensor:
        """Forwards over n pairs, batch_for(w, h) at a time, each batch gathered only when its
        turn comes (gather(i, j): pairs i to j - 1's first frames, second frames and t on the
        device). Out of device memory, the batch is halved and the run goes on, down to one
        pair."""
        outs = []
        i = 0
        while i < n:
            k = min(self.batch_for(w, h), n - i)
            a, b, t = gather(i, i + k)
            try:
                outs.append(self._forward(a, b, t))
            except torch.OutOfMemoryError:
                if k == 1:
                    raise ResourceError(
                        f"out of GPU memory for one pair of {w}x{h}; try --scale 0.5 "
                        "(--uhd) or a smaller model"
                    ) from None
                self._back_off(k)
                continue
            except (MemoryError, RuntimeError) as exc:
                if not isinstance(exc, MemoryError) and "alloc" not in str(exc):
                    raise
                raise ResourceError(
                    f"out of memory for {k} pair(s) of {w}x{h}; try --scale 0.5 or a smaller "
                    "--batch-size"
                ) from None
            i += k
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)

    def _back_off(self, batch: int) -> None:
        half = max(1, batch // 2)
        with self._count_lock:
            self.oom_backoffs += 1
            if self._max_batch is None or half < self._max_batch:
                self._max_batch = half
        self.backend.backed_off(half)
        log.warning("out of GPU memory with %d pairs per forward: going on with %d", batch, half)

    def make(
        self, a: torch.Tensor, b: torch.Tensor, requests: Sequence[Request]
    ) -> list[torch.Tensor]:
        """Frames (1 x 3 x Hp x Wp each) for every request, batched across pairs and timesteps."""
        if not requests:
            return []
        self.check_timesteps([r.t for r in requests])
        h, w = a.shape[2:]
        if self.family == "v4":
            pairs = [r.pair for r in requests]
            ts = [float(r.t) for r in requests]

            def gather(i: int, j: int):
                t = torch.tensor(ts[i:j], device=a.device)
                return rows(a, pairs[i:j]), rows(b, pairs[i:j]), t

            out = self._batched(len(requests), gather, h, w)
            return [out[i : i + 1] for i in range(len(requests))]
        return self._make_dyadic(a, b, requests)

    def _make_dyadic(self, a, b, requests: Sequence[Request]) -> list[torch.Tensor]:
        # Every needed node of each pair's midpoint tree, made level by level: a level's midpoints
        # are independent, so they run as one batch; parents stay unquantised float tensors.
        made: dict[tuple[int, Fraction], torch.Tensor] = {}
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
            return made[(pair, t)]

        h, w = a.shape[2:]
        for level in sorted(levels):
            nodes = sorted(levels[level])

            def gather(i: int, j: int, nodes=nodes):
                lo = torch.cat([get(p, _parents(t)[0]) for p, t in nodes[i:j]])
                hi = torch.cat([get(p, _parents(t)[1]) for p, t in nodes[i:j]])
                # On the frames' device: the fp32 redo indexes it with indices from there.
                return lo, hi, torch.zeros(j - i, device=lo.device)

            out = self._batched(len(nodes), gather, h, w)
            for i, node in enumerate(nodes):
                made[node] = out[i : i + 1]
        return [get(r.pair, r.t) for r in requests]

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
            x = self.to_tensor([frame0, frame1])
            out = self.make(x[0:1], x[1:2], [Request(0, t) for t in ts])
            return self.to_arrays(out, h, w, frame0.dtype)

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
