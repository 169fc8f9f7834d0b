"""How the engine runs on the CPU: lanes, host memory, Winograd, the joint mirrored stem.

Imported only for CPU runs (rife_cli.engine.interpolator picks the backend): nothing here runs on
a CUDA run, so the glibc allocator settings, the lanes' threads and the NNPACK path stay off it.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable

import numpy as np
import torch

from ..models import transforms
from ..models.transforms import winograd
from . import hostmem
from .cpus import default_lanes, usable_cores, winograd_pays
from .lanes import Lanes

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class CpuBackend:
    """Lanes (rife_cli.engine.lanes): one single-threaded worker per core, each taking whole pairs;
    freed host memory kept for reuse (rife_cli.engine.hostmem); 3x3 convolutions by Winograd."""

    device_colour = False  # the host's exact conversion; nothing to gain from planes here
    # Partial batches are not padded: here padding is compute (and lanes take pairs one by one).
    fixed_batch = False

    def __init__(
        self,
        device: torch.device,
        *,
        lanes: int = 0,
        compile: bool = False,
        reference_like: bool = False,
    ):
        """reference_like: the reference's CPU arithmetic, for the benchmark baseline (the C
        library's default allocator, direct convolutions, mirrored v3.x calls one by one)."""
        self.device = device
        self.compile = compile
        self.winograd = not reference_like and winograd_pays()
        self.reference_like = reference_like
        if not reference_like:
            # Before anything starts threads: glibc settles a thread's arena at its first malloc.
            hostmem.keep_freed_memory()
        cores = usable_cores()
        # 0 = one per usable core up to cpus.MAX_LANES; 1 = none (one forward on all cores, as
        # the benchmark baseline and torch.compile run).
        self.lanes = lanes or (1 if compile else default_lanes())
        self._lanes: Lanes | None = None
        if self.lanes > 1:
            self._lanes = Lanes(self.lanes, max(1, cores // self.lanes))
            weakref.finalize(self, self._lanes.close)
        torch.set_num_threads(cores)

    def tuning(self, pad_channels: int = 0) -> transforms.Tuning:
        """The CPU speed-ups (rife_cli.models.transforms): phase-split transposed convolutions
        (for channels-last inputs), Winograd, and the v3.x mirrored calls with one joint stem and
        their trunks in lanes; none of them for the reference-like baseline."""
        if self.reference_like:
            return transforms.Tuning(
                phase_deconv=False, winograd=False, mirrored="serial", pad_channels=pad_channels
            )
        return transforms.Tuning(
            phase_deconv=True,
            winograd=winograd_pays(),
            mirrored="batch" if self.compile else "joint",
            mirrored_map=self._lanes.map if self._lanes is not None else None,
            pad_channels=pad_channels,
        )

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.to(self.device)

    # ----- transfers
    def upload(self, array: np.ndarray) -> torch.Tensor:
        """A host array as a tensor (no copy)."""
        return torch.from_numpy(np.ascontiguousarray(array))

    def download(self, tensors) -> list[np.ndarray]:
        """Tensors as arrays (no copy)."""
        return [t.detach().numpy() for t in tensors]

    def stream(self):
        return contextlib.nullcontext()

    # ----- scheduling
    @property
    def concurrent_batches(self) -> int:
        """Two batches in make() at once where lanes go on to the next batch's pairs instead of
        waiting at the end of one; one without lanes or under torch.compile."""
        return 1 if self.compile or self._lanes is None else 2

    def batch_for(self, width: int, height: int, **_) -> int:
        """One pair per lane. (Without lanes a batch of 2 was slower on the CPU than two single
        forwards: 0.33 vs 0.38 pairs/s at 720p on 2 cores.)"""
        return self.lanes

    def forward_context(self, exact: bool = False):
        return winograd.enabled(self.winograd)

    def run(self, forward: Forward, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor):
        """forward over a batch: one job per pair, taken by whichever lane is free (a lane slowed
        by a busy core takes fewer). Pairs beyond a multiple of the lane count would leave lanes
        idle: they run one by one after, each spread over the lanes by the network where it can
        (v3.x halves)."""
        n = a.shape[0]
        if self._lanes is None or n < 2:
            return forward(a, b, t)
        whole = n - n % self._lanes.count
        outs = self._lanes.map(functools.partial(_pair, forward, a, b, t), range(whole))
        outs += [_pair(forward, a, b, t, i) for i in range(whole, n)]
        return torch.cat(outs, 0)

    def backed_off(self, batch: int) -> None:
        pass  # nothing on the CPU depends on the batch

    def close(self) -> None:
        if self._lanes is not None:
            self._lanes.close()


def _pair(forward: Forward, a, b, t, i: int) -> torch.Tensor:
    return forward(a[i : i + 1], b[i : i + 1], t[i : i + 1])
