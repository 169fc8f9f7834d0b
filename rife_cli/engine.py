"""Interpolator: device, precision, padding and batching around the networks; arrays in, frames out.

Frames are HxWx3 (or HxW) numpy arrays in OpenCV's BGR channel order, the order the networks were
trained on. uint8 and uint16 map to [0, 1] by their full range; float32 is taken as [0, 1] already.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import colour, hostmem
from .colour import Yuv420
from .cpus import default_lanes, usable_cores
from .errors import ModelError, ResourceError, UsageError
from .lanes import Lanes
from .models import transforms
from .models.loading import ModelSource, load_network, resolve, resolve_default
from .models.registry import newest_cached_v4
from .models.transforms import winograd

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
    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    scale: float = 1.0
    batch_size: int = 0  # 0: chosen from free memory (CUDA), 1 on the CPU
    offline: bool = False
    notice: Callable[[str], None] | None = None
    # A ready network instead of weights (it has `family` and `pad_base`), e.g. a test stand-in.
    network: torch.nn.Module | None = None
    memory_format: str = "channels_last"  # or "contiguous": the reference's layout, for baselines
    compile: bool = False  # torch.compile the network (slow first call; slower on the CPU)
    # Reuse freed host memory (rife_cli.hostmem). False only for the reference-like benchmark baseline.
    keep_freed_memory: bool = True
    # 3x3 convolutions by Winograd's algorithm where it applies (fp32 on the CPU; see
    # rife_cli.models.transforms.winograd). False only for the reference-like benchmark baseline.
    winograd: bool = True
    # v3.x: the two mirrored block calls as one batch or in lanes (False: one after the other, as
    # the reference does; only the reference-like benchmark baseline sets it).
    mirrored_batch: bool = True
    # CPU lanes (rife_cli.lanes): 0 = one per usable core up to cpus.MAX_LANES; 1 = none (one forward
    # on all cores, as the benchmark baseline runs). Not with torch.compile or on CUDA.
    lanes: int = 0
    # Zero-pad v3.x inner channels (90/45) to a multiple of this, for GPU tensor cores (0: off;
    # rife_cli.models.transforms.padding). A benchmark option until measured on a GPU.
    pad_channels: int = 0
    # 4.0-4.20: each block also run on the reversed pair, the two averaged (model-spec-v4x.md §4).
    ensemble: bool = False
    # The version a weights file is taken as where its tensors fit several (--model-version).
    model_version: str | None = None
    source: ModelSource = field(init=False)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise UsageError(
                f"--scale {self.scale}: use one of {', '.join(str(s) for s in SCALES)}"
            )
        self.torch_device = pick_device(self.device)
        if self.torch_device.type == "cpu" and self.keep_freed_memory:
            # Before anything starts threads: glibc settles a thread's arena at its first malloc.
            hostmem.keep_freed_memory()
        self.precision = pick_precision(self.precision, self.torch_device)
        if self.precision == "fp16" and self.torch_device.type == "cpu":
            raise UsageError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")
        if self.network is not None:
            net = self.network.eval()
            self.source = ModelSource(Path("<network>"), self.model or type(net).__name__, True)
        else:
            self.source = resolve(self.model, self.offline, self.notice)
            net = load_network(self.source, self.model_version, self.ensemble, self.notice)
        self.family: str = net.family
        self._lanes: Lanes | None = None
        if self.torch_device.type == "cpu":
            cores = usable_cores()
            if not self.lanes:
                self.lanes = 1 if self.compile else default_lanes()
            if self.lanes > 1:
                self._lanes = Lanes(self.lanes, max(1, cores // self.lanes))
                weakref.finalize(self, self._lanes.close)
            torch.set_num_threads(cores)
        else:
            self.lanes = 1
        self.channels_last = self.memory_format == "channels_last"
        cpu = self.torch_device.type == "cpu"
        # v3.x mirrored calls: one after the other as the reference (baseline); on the CPU one
        # joint stem, then the two trunks in lanes where there are; else one batch of 2N.
        mirrored = (
            "serial"
            if not self.mirrored_batch
            else "joint"
            if cpu and not self.compile
            else "batch"
        )
        tuning = transforms.Tuning(
            phase_deconv=self.channels_last,
            winograd=self.winograd,
            mirrored=mirrored,
            mirrored_map=self._lanes.map if self._lanes is not None else None,
            pad_channels=self.pad_channels,
        )
        net = transforms.apply(net, self.torch_device, tuning)
        # Channels-last lets oneDNN / cuDNN pick their fast convolution paths: measured 1.3-1.45x on
        # this project's 2-core CPU in fp32 at 720p (scripts/bench.py), results within float noise.
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.to(self.torch_device)
        # On CUDA the compiled graphs are also captured as CUDA graphs ("reduce-overhead"): one
        # launch per forward instead of hundreds of kernel launches, for fixed shapes.
        self.cuda_graphs = self.compile and self.torch_device.type == "cuda"
        self._forward_net = (
            torch.compile(
                self.net, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None
            )
            if self.compile
            else self.net
        )
        self.fp32_fallbacks = 0  # pairs redone in fp32 because half precision gave NaN/Inf
        self._count_lock = threading.Lock()  # make() may run in two threads (concurrent_batches)
        self._thread = threading.local()  # each calling thread's CUDA stream
        self.pad_to = max(net.pad_base, int(net.pad_base / self.scale))
        if not self.batch_size:
            self.batch_size = self._default_batch_size()

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
        if self.compile or (self._lanes is None and self.torch_device.type != "cuda"):
            return 1
        return 2

    def stream(self):
        """Context for a calling thread's whole batch (upload, make, download): on CUDA a stream
        of that thread's own, so that two threads' batches overlap transfers with compute; all
        of a batch's tensors live on it. Nothing on the CPU."""
        if self.torch_device.type != "cuda":
            return contextlib.nullcontext()
        s = getattr(self._thread, "stream", None)
        if s is None:
            s = self._thread.stream = torch.cuda.Stream(self.torch_device)
        return torch.cuda.stream(s)

    def close(self) -> None:
        """Stop the CPU lanes' threads (also done when the Interpolator is garbage-collected). The
        Interpolator stays usable: they start again when next needed."""
        if self._lanes is not None:
            self._lanes.close()

    def _default_batch_size(self) -> int:
        if self.torch_device.type != "cuda":
            # One pair per lane. (Without lanes a batch of 2 was slower on the CPU than two
            # single forwards: 0.33 vs 0.38 pairs/s at 720p on 2 cores.)
            return self.lanes
        free, _ = torch.cuda.mem_get_info(self.torch_device)
        # A conservative budget of 2 GiB of free memory per pair, for each of the batches in
        # flight (not yet measured on a GPU: the largest v3.6 activations at 1080p in fp16 add up
        # to a few hundred MiB).
        return int(max(1, min(16, free // (2 << 30) // self.concurrent_batches)))

    # ----- tensors in and out
    @property
    def device_colour(self) -> bool:
        """Whether video pictures should come as YUV planes, converted to BGR on the device
        (rife_cli.colour): on CUDA, where the host's conversion would limit the pipeline."""
        return self.torch_device.type == "cuda"

    def to_tensor(self, frames: Sequence[np.ndarray | Yuv420]) -> torch.Tensor:
        """Stack BGR frames (or YUV 4:2:0 pictures, converted on the device) into an
        N x 3 x Hp x Wp float32 batch on the device, zero-padded."""
        if all(isinstance(f, np.ndarray) for f in frames):
            x = self._bgr_to_device(frames)
        else:
            x = torch.cat(
                [
                    self._bgr_to_device([f])
                    if isinstance(f, np.ndarray)
                    else colour.yuv420_to_bgr(f, self._upload(f.data))
                    for f in frames
                ]
            )
        h, w = x.shape[2:]
        ph = (self.pad_to - h % self.pad_to) % self.pad_to
        pw = (self.pad_to - w % self.pad_to) % self.pad_to
        x = F.pad(x, (0, pw, 0, ph))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        """A host array as a tensor on the device (the same tensor on the CPU)."""
        x = torch.from_numpy(np.ascontiguousarray(array))
        if self.torch_device.type == "cuda":
            # From page-locked memory the copy is asynchronous: the host goes on queueing work.
            # (PyTorch's pinned-memory cache keeps the block until the copy has finished.)
            x = x.pin_memory()
        return x.to(self.torch_device, non_blocking=True)

    def _bgr_to_device(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """N x 3 x H x W float32 in [0, 1] on the device from BGR (or gray, or BGRA) arrays."""
        arrs = []
        for f in frames:
            if f.ndim == 2:
                f = np.repeat(f[:, :, None], 3, axis=2)
            arrs.append(f[:, :, :3])
        x = self._upload(np.stack(arrs))
        dtype = arrs[0].dtype
        x = x.permute(0, 3, 1, 2)
        if dtype == np.uint8:
            return x.float() / 255.0
        if dtype == np.uint16:
            return x.float() / 65535.0
        return x.float()

    def to_pair_tensors(
        self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and second frames of pairs as two batches (to_tensor), each distinct frame
        converted and moved to the device once: consecutive pairs share a frame."""
        rows: dict[int, int] = {}
        frames: list[np.ndarray] = []
        for f in (*firsts, *seconds):
            if id(f) not in rows:
                rows[id(f)] = len(frames)
                frames.append(f)
        x = self.to_tensor(frames)
        return _rows(x, [rows[id(f)] for f in firsts]), _rows(x, [rows[id(f)] for f in seconds])

    @staticmethod
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
        x = x[:, :, :h, :w].float()
        if dtype in (np.uint8, np.uint16):
            top = 255.0 if dtype == np.uint8 else 65535.0
            x = x.clamp(0, 1) * top
            x = x.round() if rounding == "nearest" else x.floor()
            x = x.to(torch.int32 if dtype == np.uint16 else torch.uint8)
        out = x.permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(a.astype(dtype, copy=False)) for a in out]

    # ----- the network
    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.torch_device.type, dtype=dtype)

    def _run_net(
        self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, autocast: bool
    ) -> torch.Tensor:
        n = a.shape[0]
        if self._lanes is None or n < 2:
            return self._run_net_here(a, b, t, autocast)
        # One job per pair, taken by whichever lane is free (a lane slowed by a busy core takes
        # fewer). Pairs beyond a multiple of the lane count would leave lanes idle: they run one
        # by one after, each spread over the lanes by the network where it can (v3.x halves).
        whole = n - n % self._lanes.count
        outs = self._lanes.map(functools.partial(self._run_pair, a, b, t, autocast), range(whole))
        outs += [self._run_pair(a, b, t, autocast, i) for i in range(whole, n)]
        return torch.cat(outs, 0)

    def _run_pair(self, a, b, t, autocast: bool, i: int) -> torch.Tensor:
        return self._run_net_here(a[i : i + 1], b[i : i + 1], t[i : i + 1], autocast)

    def _run_net_here(
        self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, autocast: bool
    ) -> torch.Tensor:
        with (
            torch.inference_mode(),
            winograd.enabled(self.winograd),
            self._autocast() if autocast else contextlib.nullcontext(),
        ):
            if self.cuda_graphs:
                # A replay reuses the memory of the previous one's outputs: each forward is a step
                # of its own, and what it returns is copied out below.
                torch.compiler.cudagraph_mark_step_begin()
            if self.family == "v4":
                out = self._forward_net(a, b, t, self.scale)
            else:
                out = self._forward_net(a, b, self.scale)
            out = out.float()
            return out.clone() if self.cuda_graphs else out

    def _forward(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        try:
            out = self._run_net(a, b, t, autocast=True)
            if self.precision != "fp32":
                # Half precision can overflow on large frames: redo only those pairs in fp32.
                bad = ~torch.isfinite(out).flatten(1).all(1)
                if bool(bad.any()):
                    idx = bad.nonzero().flatten()
                    redo = self._run_net(a[idx], b[idx], t[idx], autocast=False)
                    with torch.inference_mode():
                        out = out.index_copy(0, idx, redo)
                    with self._count_lock:
                        self.fp32_fallbacks += int(idx.numel())
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if not isinstance(exc, (torch.OutOfMemoryError, MemoryError)) and "alloc" not in str(
                exc
            ):
                raise
            raise ResourceError(
                f"out of {'GPU ' if a.is_cuda else ''}memory for {a.shape[0]} pair(s) of "
                f"{a.shape[3]}x{a.shape[2]}; try --scale 0.5 or a smaller --batch-size"
            ) from None
        return out

    def _batched(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        outs = [
            self._forward(
                a[i : i + self.batch_size], b[i : i + self.batch_size], t[i : i + self.batch_size]
            )
            for i in range(0, a.shape[0], self.batch_size)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)

    def make(
        self, a: torch.Tensor, b: torch.Tensor, requests: Sequence[Request]
    ) -> list[torch.Tensor]:
        """Frames (1 x 3 x Hp x Wp each) for every request, batched across pairs and timesteps."""
        if not requests:
            return []
        self.check_timesteps([r.t for r in requests])
        if self.family == "v4":
            idx = torch.tensor([r.pair for r in requests], device=a.device)
            t = torch.tensor([float(r.t) for r in requests], device=a.device)
            out = self._batched(a[idx], b[idx], t)
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

        for level in sorted(levels):
            nodes = sorted(levels[level])
            lo = torch.cat([get(p, _parents(t)[0]) for p, t in nodes])
            hi = torch.cat([get(p, _parents(t)[1]) for p, t in nodes])
            out = self._batched(lo, hi, torch.zeros(len(nodes)))
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


def _rows(x: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
    """x[idx] along the batch dimension: a view for a run of consecutive rows (the usual case),
    else a copy; either way in x's memory format."""
    if list(idx) == list(range(idx[0], idx[0] + len(idx))):
        return x[idx[0] : idx[0] + len(idx)]
    return torch.cat([x[i : i + 1] for i in idx])


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
