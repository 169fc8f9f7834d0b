"""The CUDA path's logic, tested on the CPU: out-of-memory back-off, the fp32 redo's devices, the
per-stream grid cache, the memory model, and what only CPU runs set up."""

from __future__ import annotations

import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch
from clips import BlendNet, make_video

from rife_cli.engine import Interpolator, Request
from rife_cli.engine import cuda as cuda_backend
from rife_cli.engine.cuda import CudaBackend, auto_batch, pair_bytes
from rife_cli.errors import ResourceError
from rife_cli.models import warp
from rife_cli.torchcompat import OutOfMemoryError

HALF = Fraction(1, 2)


class TightBlend(BlendNet):
    """A blend that runs out of "device memory" on batches larger than `fits` pairs."""

    def __init__(self, fits: int):
        super().__init__()
        self.fits = fits
        self.batches: list[int] = []

    def forward(self, a, b, t, scale=1.0):
        self.batches.append(a.shape[0])
        if a.shape[0] > self.fits:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(a, b, t, scale)


def frames(n, h=40, w=56, seed=5):
    rng = np.random.default_rng(seed)
    return [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(n)]


def blend_of(x, pairs, ts):
    return [x[p : p + 1] * (1 - t) + x[p + 1 : p + 2] * t for p, t in zip(pairs, ts)]


def test_out_of_memory_halves_the_batch_and_goes_on():
    net = TightBlend(fits=2)
    eng = Interpolator(device="cpu", precision="fp32", network=net, batch_size=8, lanes=1)
    x = eng.to_tensor(frames(9))
    reqs = [Request(i, HALF) for i in range(8)]
    outs = eng.make(x[:8], x[1:], reqs)
    # 8 fails, 4 fails, then pairs of two to the end; the halving holds for later batches.
    assert net.batches == [8, 4, 2, 2, 2, 2]
    assert eng.oom_backoffs == 2 and eng.batch_for(56, 40) == 2
    for got, want in zip(outs, blend_of(x, range(8), [0.5] * 8)):
        assert torch.allclose(got, want)


def test_out_of_memory_with_one_pair_is_an_error_that_says_what_to_do():
    eng = Interpolator(device="cpu", precision="fp32", network=TightBlend(0), lanes=1)
    x = eng.to_tensor(frames(2))
    with pytest.raises(ResourceError, match="one pair of 64x64.*--scale 0.5"):
        eng.make(x[:1], x[1:], [Request(0, HALF)])


def test_the_summary_counts_the_back_offs_and_the_frames_are_the_same(tmp_path):
    from clips import decode

    from rife_cli.pipeline import interpolate_video

    src = make_video(tmp_path / "a.mkv", n=7, codec="ffv1")
    outs = {}
    for fits in (1, 8):
        eng = Interpolator(
            device="cpu", precision="fp32", network=TightBlend(fits), batch_size=4, lanes=1
        )
        s = interpolate_video(
            src,
            tmp_path / f"o{fits}.mkv",
            engine_factory=lambda need, e=eng: e,
            exp=1,
            codec="ffv1",
            scene_threshold=0,
        )
        outs[fits] = (s.oom_backoffs, decode(tmp_path / f"o{fits}.mkv")[0])
    assert outs[8][0] == 0 and outs[1][0] == 2  # 4 -> 2 -> 1, once each
    assert len(outs[1][1]) == len(outs[8][1]) == 14
    assert all(np.array_equal(a, b) for a, b in zip(outs[1][1], outs[8][1]))


class MidpointNet(torch.nn.Module):
    """A v3.x-family stand-in: the midpoint, NaN under autocast for pairs whose first frame is
    brighter than its second (as half precision overflowing on some pairs)."""

    family = "v3"
    pad_base = 32

    def forward(self, a, b, scale=1.0):
        out = (a + b) / 2
        if torch.is_autocast_enabled("cpu"):
            bad = (a.mean((1, 2, 3)) > b.mean((1, 2, 3))).view(-1, 1, 1, 1)
            out = torch.where(bad, torch.full_like(out, float("nan")), out)
        return out


def test_half_precision_nan_pairs_are_redone_in_fp32_at_every_level():
    eng = Interpolator(device="cpu", precision="bf16", network=MidpointNet(), lanes=1)
    f = frames(3)
    f[0] = np.full_like(f[0], 200)  # pair 0: first brighter than second -> NaN in "half"
    x = eng.to_tensor(f)
    reqs = [Request(p, t) for p in (0, 1) for t in (Fraction(1, 4), HALF, Fraction(3, 4))]
    outs = eng.make(x[:2], x[1:], reqs)
    assert all(bool(torch.isfinite(o).all()) for o in outs)
    # Pair 0's midpoint, then its quarter (parents: 0 and the midpoint, brighter than it).
    assert eng.fp32_fallbacks >= 2
    want = (x[0:1] + x[1:2]) / 2
    assert torch.allclose(outs[1], want)


def test_dyadic_timesteps_live_on_the_frames_device(monkeypatch):
    """The v3.x t tensor is made where the frames are (the fp32 redo indexes it with indices
    from there; a CPU tensor indexed by CUDA indices raises). Checked with the meta device."""
    eng = Interpolator(device="cpu", precision="fp32", network=MidpointNet(), lanes=1)
    seen = []

    def forward(a, b, t, exact=False):
        seen.append((a.device, b.device, t.device))
        return torch.empty_like(a), None

    monkeypatch.setattr(eng, "_forward", forward)
    a = torch.empty(2, 3, 32, 32, device="meta")
    eng.make(a, a, [Request(p, t) for p in (0, 1) for t in (Fraction(1, 4), HALF)])
    assert seen and all(d == (torch.device("meta"),) * 3 for d in seen)


def test_v4_requests_are_gathered_one_forward_at_a_time():
    """A batch's requests are gathered per forward, not all before splitting: each forward
    gets exactly its own rows, in order."""
    net = TightBlend(fits=64)
    eng = Interpolator(device="cpu", precision="fp32", network=net, batch_size=2, lanes=1)
    x = eng.to_tensor(frames(3))
    ts = [Fraction(1, 3), Fraction(2, 3), HALF]
    reqs = [Request(0, ts[0]), Request(1, ts[1]), Request(0, ts[2])]
    outs = eng.make(x[:2], x[1:], reqs)
    assert net.batches == [2, 1]
    for got, want in zip(outs, blend_of(x, [0, 1, 0], [float(t) for t in ts])):
        assert torch.allclose(got, want, atol=1e-6)


# ----- warping grids per stream
def test_grids_are_cached_per_stream(monkeypatch):
    stream = threading.local()
    monkeypatch.setattr(warp, "_stream_key", lambda device: getattr(stream, "key", None))
    monkeypatch.setattr(warp, "_GRIDS", {})
    got = {}

    def use(key):
        stream.key = key
        got[key] = [warp._base_grid(1, 8, 12, torch.device("cpu"), torch.float32) for _ in "ab"]

    threads = [threading.Thread(target=use, args=(k,)) for k in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # Each stream reuses its own grid and never sees the other's.
    for k in (1, 2):
        assert got[k][0].data_ptr() == got[k][1].data_ptr()
    assert got[1][0].data_ptr() != got[2][0].data_ptr()
    assert torch.equal(got[1][0], got[2][0])


def test_a_full_stream_drops_only_its_own_grids(monkeypatch):
    stream = {"key": 1}
    monkeypatch.setattr(warp, "_stream_key", lambda device: stream["key"])
    monkeypatch.setattr(warp, "_GRIDS", {})
    cpu = torch.device("cpu")
    other = warp._base_grid(1, 4, 4, cpu, torch.float32)
    stream["key"] = 2
    for i in range(warp.MAX_GRIDS_PER_STREAM + 1):
        warp._base_grid(1, 4, 5 + i, cpu, torch.float32)
    assert sum(k[0] == 2 for k in warp._GRIDS) <= warp.MAX_GRIDS_PER_STREAM
    stream["key"] = 1
    assert warp._base_grid(1, 4, 4, cpu, torch.float32).data_ptr() == other.data_ptr()


# ----- the memory model
def test_memory_model_scales_with_size_scale_and_precision():
    hd = pair_bytes(1920, 1088, "v3", 1.0, "fp32")
    assert pair_bytes(3840, 2176, "v3", 1.0, "fp32") == pytest.approx(4 * hd, rel=1e-3)
    assert pair_bytes(1920, 1088, "v3", 1.0, "fp16") < hd
    assert pair_bytes(3840, 2176, "v3", 0.5, "fp16") < pair_bytes(3840, 2176, "v3", 1.0, "fp16")
    assert pair_bytes(1920, 1088, "4.6", 1.0, "fp32") < hd  # 4.x's blocks are cheaper per pixel
    # per 4.x layout: the heavier ones cost more; an unknown group takes the largest figure
    assert pair_bytes(1920, 1088, "4.25.heavy", 1.0, "fp32") > pair_bytes(
        1920, 1088, "4.6", 1.0, "fp32"
    )
    assert pair_bytes(1920, 1088, "v4", 1.0, "fp32") >= hd
    # each made frame a pair holds until the download counts (--multi 8: 7)
    assert (
        pair_bytes(1920, 1088, "4.6", 1.0, "fp16", outputs=7)
        > pair_bytes(1920, 1088, "4.6", 1.0, "fp16") + 6 * 1920 * 1088 * 12
    )
    gib = 2**30
    # A small card at 4K: one pair; a large one: more, never more than MAX_BATCH.
    assert auto_batch(4 * gib, 3840, 2176, "v3", 0.5, "fp16", 2) == 1
    big = auto_batch(130 * gib, 3840, 2176, "v3", 0.5, "fp16", 2)
    assert 4 <= big <= cuda_backend.MAX_BATCH
    assert auto_batch(130 * gib, 1920, 1088, "4.6", 1.0, "fp16", 2) == cuda_backend.MAX_BATCH
    many = auto_batch(130 * gib, 3840, 2176, "4.6", 1.0, "fp16", 2, outputs=7)
    assert many < auto_batch(130 * gib, 3840, 2176, "4.6", 1.0, "fp16", 2)
    # Two batches in flight share the memory.
    one = auto_batch(24 * gib, 1920, 1088, "v3", 1.0, "fp16", 1)
    two = auto_batch(24 * gib, 1920, 1088, "v3", 1.0, "fp16", 2)
    assert 1 <= two < one and two <= one // 2 + 1


def test_cuda_batch_comes_from_the_memory_model_once_per_size():
    free = [24 * 2**30]
    eng = Interpolator(device="cpu", precision="fp32", network=BlendNet(), lanes=1)
    eng.backend = CudaBackend(torch.device("cpu"), free_memory=lambda: free[0])
    eng.batch_size = 0  # automatic
    first = eng.batch_for(1920, 1080)
    assert first == auto_batch(free[0], 1920, 1088, "v4", 1.0, "fp32", 2)
    free[0] = 2**30  # the other batch in flight holds memory now: same answer for this size
    assert eng.batch_for(1920, 1080) == first
    assert eng.batch_for(3840, 2160) == 1  # asked first now
    eng.batch_size = 3  # --batch-size wins
    assert eng.batch_for(1920, 1080) == 3


# ----- CPU-only machinery
def test_cpu_runs_never_import_the_cuda_backend():
    code = (
        "import sys; sys.path.insert(0, 'tests'); from clips import BlendNet;"
        "from rife_cli.engine import Interpolator;"
        "e = Interpolator(device='cpu', network=BlendNet());"
        "print('rife_cli.engine.cuda' in sys.modules, 'rife_cli.engine.cpu' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_the_host_allocator_is_tuned_only_for_cpu_runs(monkeypatch):
    from rife_cli import cli

    monkeypatch.setattr(cli, "nvidia_present", lambda: True)
    assert not cli.cpu_run_expected(["interpolate", "a.mp4"])  # auto on a GPU box
    assert not cli.cpu_run_expected(["interpolate", "--device", "cuda:1", "a.mp4"])
    assert cli.cpu_run_expected(["interpolate", "--device=cpu", "a.mp4"])
    monkeypatch.setattr(cli, "nvidia_present", lambda: False)
    assert cli.cpu_run_expected(["frames", "a.png", "b.png"])


def test_the_transposed_convolution_rewrite_is_for_the_cpu_only(monkeypatch):
    from rife_cli.models.transforms import upconv

    layer = upconv.UpConv(8, 4)
    monkeypatch.setattr(upconv, "phase_weight", lambda w: pytest.fail("CPU rewrite taken"))
    x = torch.empty(1, 8, 6, 10, device="meta").contiguous(memory_format=torch.channels_last)
    assert layer.to("meta")(x).shape == (1, 4, 12, 20)


def test_cuda_runs_take_none_of_the_cpu_rewrites():
    from rife_cli.engine.cuda import CudaBackend

    tuning = CudaBackend(torch.device("cpu")).tuning()
    assert not tuning.phase_deconv and not tuning.winograd and tuning.mirrored == "batch"
    assert CudaBackend(torch.device("cpu"), reference_like=True).tuning().mirrored == "serial"
