"""The CUDA engine's steady state, on the CPU: no host sync in a batch but its one download, one
batch shape per input, the NaN/Inf check folded into the download (flows included), the
out-of-memory back-off at every stage, TF32 off for fp32, warping grids freed, and segment cuts
that do not drain the pipeline. The CUDA backend's logic runs on the CPU device here."""

from __future__ import annotations

import contextlib
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch
from clips import BlendNet, decode, make_video
from torch.overrides import TorchFunctionMode

from rife_cli.engine import Interpolator, Request
from rife_cli.engine.cuda import CudaBackend
from rife_cli.errors import ResourceError
from rife_cli.models import ifnet_v4x, warp
from rife_cli.models.finite import unless_finite
from rife_cli.pipeline import _Run, interpolate_video

HALF = Fraction(1, 2)
T = torch.Tensor
# What makes the host wait for a CUDA device: reading a value, a result whose size depends on
# the data, a copy to the host.
READS = {T.item, T.__bool__, T.__int__, T.__float__, T.__index__, T.tolist, T.cpu, T.numpy}
SIZED = {T.nonzero, torch.nonzero, T.masked_select, torch.masked_select, T.unique, torch.unique}


def _moves(func, args, kwargs) -> bool:
    """A .to()/copy_ naming a device without non_blocking=True (pageable: waits for the stream),
    or a tensor made from host data straight on a device."""
    if func in (torch.tensor, torch.as_tensor):
        return kwargs.get("device") is not None
    if func is T.to:
        named = kwargs.get("device") is not None or any(
            isinstance(a, (torch.device, str)) for a in args[1:]
        )
        return named and not kwargs.get("non_blocking", False)
    return False


def _masked(func, args) -> bool:
    """x[mask] or x[mask] = v with a boolean tensor: a data-dependent size."""
    if func not in (T.__getitem__, T.__setitem__):
        return False
    idx = args[1] if isinstance(args[1], tuple) else (args[1],)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in idx)


class SyncCounter(TorchFunctionMode):
    """Records every call that would make the host wait on a CUDA device."""

    def __init__(self, seen: list, paused: threading.local):
        super().__init__()
        self.seen, self.paused = seen, paused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not getattr(self.paused, "on", False) and (
            func in READS or func in SIZED or _moves(func, args, kwargs) or _masked(func, args)
        ):
            self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


def cuda_like(net, precision="fp32", batch_size=0, free=24 << 30) -> Interpolator:
    """An Interpolator with the CUDA backend's logic on the CPU device."""
    eng = Interpolator(device="cpu", precision=precision, network=net, lanes=1)
    eng.backend = CudaBackend(torch.device("cpu"), free_memory=lambda: free)
    eng.batch_size = batch_size
    eng.stream = contextlib.nullcontext  # no CUDA streams on the CPU
    return eng


def count_syncs(eng: Interpolator):
    """Every batch's stream context counts the would-be syncs of its thread; the backend's
    download is the one allowed wait (counted apart)."""
    seen: list[str] = []
    downloads = [0]
    paused = threading.local()
    real = eng.backend.download

    def download(tensors):
        downloads[0] += 1
        paused.on = True
        try:
            return real(tensors)
        finally:
            paused.on = False

    eng.backend.download = download

    @contextlib.contextmanager
    def stream():
        with SyncCounter(seen, paused):
            yield

    eng.stream = stream
    return seen, downloads


class HalfNaN(BlendNet):
    """A blend that gives NaN under autocast for pairs whose first frame is brighter than its
    second (as half precision overflowing on some pairs), and records its input shapes."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple] = []

    def forward(self, a, b, t, scale=1.0):
        self.shapes.append((tuple(a.shape), tuple(b.shape), tuple(t.shape)))
        out = super().forward(a, b, t, scale)
        if torch.is_autocast_enabled("cpu"):
            bad = (a.mean((1, 2, 3)) > b.mean((1, 2, 3))).view(-1, 1, 1, 1)
            out = torch.where(bad, torch.nan, out)
        return out


def frames(n, h=40, w=56, seed=5):
    rng = np.random.default_rng(seed)
    return [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(n)]


# ----- no host sync in the steady loop
def test_a_cuda_run_waits_for_the_device_once_a_batch(tmp_path):
    """The whole pipeline, CUDA's way (YUV planes uploaded, two batches in flight), in half
    precision so that the NaN check runs: within a batch, nothing waits but the download."""
    src = make_video(tmp_path / "a.mkv", n=9, codec="ffv1")
    eng = cuda_like(BlendNet(), "bf16", batch_size=2)
    seen, downloads = count_syncs(eng)
    s = interpolate_video(
        src, tmp_path / "o.mkv", engine_factory=lambda need: eng, exp=2, codec="ffv1"
    )
    assert s.frames_out == 36
    assert seen == []
    assert downloads[0] == 4  # 8 pairs, 2 a batch: one wait each


def test_the_counter_sees_what_would_wait():
    """The instrument itself: each kind of wait the steady loop must not have is counted."""
    seen: list[str] = []
    x = torch.ones(4)
    with SyncCounter(seen, threading.local()):
        bool(x.any())
        x.nonzero()
        x[x > 0]
        torch.tensor([0.5, 0.25], device="cpu")
        x.to("cpu")
        x.to("cpu", non_blocking=True)  # page-locked and queued: fine
        x.float()
    assert seen == ["__bool__", "nonzero", "__getitem__", "tensor", "to"]


def test_nan_pairs_are_redone_after_the_download():
    """Half precision's NaN pairs come down flagged with the frames, are redone in fp32 and
    fetched in a second round trip; the rest of the batch is as made."""
    eng = cuda_like(HalfNaN(), "bf16", batch_size=4)
    seen, downloads = count_syncs(eng)
    f = [(frames(1, seed=i)[0] // 8 + 40 * i).astype(np.uint8) for i in range(5)]  # brighter
    f[1] = np.full_like(f[1], 250)  # pair 1 only: brighter first frame
    reqs = [Request(p, t) for p in range(4) for t in (Fraction(1, 3), HALF)]
    with eng.stream():
        got = eng.frames_for(f[:4], f[1:], reqs, 40, 56)
    assert seen == [] and downloads[0] == 2
    assert eng.fp32_fallbacks == 2  # pair 1's two frames
    want = cuda_like(HalfNaN(), "fp32", batch_size=4).frames_for(f[:4], f[1:], reqs, 40, 56)
    for g, w in zip(got, want):
        assert np.abs(g.astype(int) - w.astype(int)).max() <= 1  # bf16 vs fp32 elsewhere
    assert np.array_equal(got[2], want[2]) and np.array_equal(got[3], want[3])


def test_a_non_finite_flow_marks_its_frame():
    """grid_sample turns a NaN flow into a finite, wrong picture: the frame is made NaN instead,
    pair by pair, and bit-identical where the flow is finite."""
    frame = torch.rand(3, 3, 8, 8)
    flow = torch.zeros(3, 4, 8, 8)
    flow[1, 2, 3, 3] = torch.inf
    out = unless_finite(frame, flow)
    assert torch.isnan(out[1]).all()
    assert torch.equal(out[0], frame[0]) and torch.equal(out[2], frame[2])


def test_a_4x_network_flags_a_nan_flow(monkeypatch):
    """A 4.x network whose last flow update goes NaN for one pair (the mask and warps stay
    finite) gives a NaN frame for that pair only, which the engine then redoes."""
    net = ifnet_v4x.IFNetV4x(ifnet_v4x.VERSIONS["4.6"], "4.6").eval()
    update = ifnet_v4x.IFNetV4x._update
    poison = {"on": True}

    def nan_update(self, flow, mask, d, m):
        flow, mask = update(self, flow, mask, d, m)
        if poison["on"]:
            flow = flow.clone()
            flow[1, 0, 0, 0] = torch.nan
        return flow, mask

    monkeypatch.setattr(ifnet_v4x.IFNetV4x, "_update", nan_update)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        out = net(x, x.flip(0), torch.full((2,), 0.5))
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


# ----- fixed shapes
def test_every_forward_of_a_cuda_run_has_the_batch_shape(tmp_path):
    """Partial batches (the last one, scene cuts, segment cuts), the fp32 redo's subsets: all
    padded to the batch's shape, so cuDNN and torch.compile see one shape per input."""
    src = make_video(tmp_path / "a.mkv", n=23, codec="ffv1", cut_at=9)
    net = HalfNaN()
    eng = cuda_like(net, "bf16", batch_size=4)
    s = interpolate_video(
        src,
        tmp_path / "o.mkv",
        engine_factory=lambda need: eng,
        exp=1,
        codec="ffv1",
        segment_frames=10,
    )
    assert s.scene_cuts == 1 and s.frames_out == 46
    assert len({a for a, b, t in net.shapes}) == 1
    assert {(a[0], b[0], t[0]) for a, b, t in net.shapes} == {(4, 4, 4)}


def test_dyadic_levels_and_redo_subsets_are_padded_on_cuda_only():
    class Midpoint(torch.nn.Module):
        family = "v3"
        pad_base = 32

        def __init__(self):
            super().__init__()
            self.batches: list[int] = []

        def forward(self, a, b, scale=1.0):
            self.batches.append(a.shape[0])
            out = (a + b) / 2
            if torch.is_autocast_enabled("cpu"):
                out = torch.where(a[:, :1, :1, :1] > 0.99, torch.nan, out)
            return out

    f = [x // 2 for x in frames(4)]
    f[0] = np.full_like(f[0], 255)  # pair 0's first frame: NaN in "half" at level 1, and so on
    reqs = [Request(p, t) for p in range(3) for t in (Fraction(1, 4), HALF, Fraction(3, 4))]
    net = Midpoint()
    eng = cuda_like(net, "bf16", batch_size=4)
    got = eng.frames_for(f[:3], f[1:], reqs, 40, 56)
    # levels of 3 and 6 nodes, then the redo of pair 0's 3 frames: every forward 4 pairs
    assert set(net.batches) == {4} and eng.fp32_fallbacks == 3
    plain = Midpoint()
    cpu = Interpolator(device="cpu", precision="fp32", network=plain, lanes=1, batch_size=4)
    want = cpu.frames_for(f[:3], f[1:], reqs, 40, 56)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert plain.batches == [3, 4, 2]  # the CPU pads nothing: padding is compute there


# ----- out of memory at every stage
OOMS = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
]


class FailOnce(TorchFunctionMode):
    def __init__(self, func, exc):
        super().__init__()
        self.func, self.exc = func, exc

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is self.func and self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
        return func(*args, **(kwargs or {}))


def _fail_once(obj, name, exc, when=lambda *a: True):
    real = getattr(obj, name)
    state = {"exc": exc}

    def fn(*args, **kwargs):
        if state["exc"] is not None and when(*args):
            exc_, state["exc"] = state["exc"], None
            raise exc_
        return real(*args, **kwargs)

    setattr(obj, name, fn)


@pytest.mark.parametrize("stage", ["upload", "gather", "forward", "outputs", "download"])
@pytest.mark.parametrize("exc", OOMS, ids=["torch", "cuda", "cudnn", "cublas"])
def test_out_of_memory_at_any_stage_halves_the_batch(stage, exc, monkeypatch):
    f = frames(5)
    reqs = [Request(p, t) for p in range(4) for t in (Fraction(1, 3), Fraction(2, 3))]
    want = cuda_like(BlendNet(), batch_size=4).frames_for(f[:4], f[1:], reqs, 40, 56)
    eng = cuda_like(BlendNet(), batch_size=4)
    mode = contextlib.nullcontext()
    if stage == "upload":  # the pairs' frames (4-D: N x H x W x C)
        _fail_once(eng.backend, "upload", exc, lambda a: a.ndim == 4)
    elif stage == "gather":  # a forward's timesteps
        _fail_once(eng.backend, "upload", exc, lambda a: a.ndim == 1)
    elif stage == "forward":
        _fail_once(eng, "_forward_net", exc)
    elif stage == "outputs":  # the batch's frames, several forwards' worth
        mode = FailOnce(torch.empty, exc)
    else:
        _fail_once(eng.backend, "download", exc)
    with mode:
        got = eng.frames_for(f[:4], f[1:], reqs, 40, 56)
    assert eng.oom_backoffs == 1 and eng.batch_for(56, 40) == 2
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_out_of_memory_for_one_pair_and_other_errors():
    eng = cuda_like(BlendNet(), batch_size=1)
    f = frames(2)
    _fail_once(eng.backend, "download", RuntimeError("CUDA error: out of memory"))
    with pytest.raises(ResourceError, match="one pair of 56x40"):
        eng.frames_for(f[:1], f[1:], [Request(0, HALF)], 40, 56)
    _fail_once(eng.backend, "upload", RuntimeError("CUDA error: an illegal memory access"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        eng.frames_for(f[:1], f[1:], [Request(0, HALF)], 40, 56)
    assert eng.oom_backoffs == 0


# ----- TF32
def test_fp32_forwards_run_with_tf32_off_and_leave_it_as_found():
    seen = []

    class Recording(BlendNet):
        def forward(self, a, b, t, scale=1.0):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return super().forward(a, b, t, scale)

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        f = frames(2)
        cuda_like(Recording(), "fp32").frames_for(f[:1], f[1:], [Request(0, HALF)], 40, 56)
        cuda_like(Recording(), "bf16").frames_for(f[:1], f[1:], [Request(0, HALF)], 40, 56)
        assert seen == [(False, False), (True, True)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_tf32_stays_off_until_the_last_overlapping_forward_ends():
    from rife_cli.engine.cuda import tf32_off

    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        first, second = tf32_off(), tf32_off()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the other thread's forward still runs
        assert not torch.backends.cudnn.allow_tf32
        second.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before


# ----- warping grids
def _grid_for(stream: int):
    key = (stream, 8, 12, torch.device("cpu"), torch.float32)
    warp._GRIDS[key] = torch.zeros(1)
    return key


def test_grids_go_when_the_input_ends(monkeypatch):
    monkeypatch.setattr(warp, "_GRIDS", {})
    for s in (1, 2):
        _grid_for(s)
    other = (3, 8, 12, torch.device("meta"), torch.float32)
    warp._GRIDS[other] = torch.zeros(1)
    CudaBackend(torch.device("cpu")).close()  # what interpolate_video does at the end
    assert list(warp._GRIDS) == [other]  # another device's grids are its own


def test_grids_go_with_their_batch_thread(monkeypatch):
    import gc

    class FakeStream:
        count = 100

        def __init__(self, device=None):
            FakeStream.count += 1
            self.cuda_stream = FakeStream.count

        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "default_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(warp, "_GRIDS", {})
    backend = CudaBackend(torch.device("cpu"))
    keys = []

    def batch():
        with backend.stream():
            keys.append(_grid_for(backend._thread.stream.stream.cuda_stream))

    for _ in range(3):  # one thread per input, as the pipeline's batch workers
        th = threading.Thread(target=batch)
        th.start()
        th.join()
    gc.collect()
    assert len(set(keys)) == 3 and warp._GRIDS == {}


# ----- large motion (4.0/4.1) without a sync
def _large_motion_pair(monkeypatch):
    net = ifnet_v4x.IFNetV4x(ifnet_v4x.VERSIONS["4.1"], "4.1").eval()
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    a, b = x[:2], torch.stack([x[1], x[2].roll(20, dims=2)])
    t = torch.full((2,), 0.5)
    # the threshold between the two pairs' block-1 updates: one pair large, one not
    seen = {}
    level = ifnet_v4x.IFNetV4x._level

    def record(self, i, p, s, flow, mask, feat):
        d, m, feat, d_fwd = level(self, i, p, s, flow, mask, feat)
        if i == 1 and "fa" not in seen:
            fa = d_fwd.abs().amax(dim=(2, 3))
            seen["fa"] = torch.minimum(fa[:, 0:2].amax(1), fa[:, 2:4].amax(1))
        return d, m, feat, d_fwd

    monkeypatch.setattr(ifnet_v4x.IFNetV4x, "_level", record)
    with torch.inference_mode():
        net(a, b, t)
    monkeypatch.setattr(ifnet_v4x.IFNetV4x, "_level", level)
    lo, hi = sorted(seen["fa"].tolist())
    assert lo < hi
    monkeypatch.setattr(ifnet_v4x, "LARGE_MOTION", (lo + hi) / 2)
    return net, a, b, t


def test_large_motion_select_form_equals_the_subset_form(monkeypatch):
    net, a, b, t = _large_motion_pair(monkeypatch)
    outs = {}
    for form in ("subset", "select"):
        net.large_motion = form
        with torch.inference_mode():
            outs[form] = net(a, b, t)
    one = []
    net.large_motion = "subset"
    for i in range(2):  # each pair alone, as the reference decides it
        with torch.inference_mode():
            one.append(net(a[i : i + 1], b[i : i + 1], t[i : i + 1]))
    assert torch.allclose(outs["select"], outs["subset"], atol=1e-5)
    assert torch.allclose(outs["select"], torch.cat(one), atol=1e-5)
    # and the large pair's frame is the coarse pass's, not the fine one's
    monkeypatch.setattr(ifnet_v4x, "LARGE_MOTION", 1e9)
    with torch.inference_mode():
        fine = net(a, b, t)
    assert not torch.allclose(fine, outs["select"], atol=1e-3)


def test_large_motion_select_form_does_not_wait(monkeypatch):
    net, a, b, t = _large_motion_pair(monkeypatch)
    counts = {}
    for form in ("subset", "select"):
        net.large_motion = form
        seen: list[str] = []
        with torch.inference_mode(), SyncCounter(seen, threading.local()):
            net(a, b, t)
        counts[form] = seen
    assert counts["select"] == [] and counts["subset"]


# ----- segment cuts
def test_segment_cuts_do_not_drain_the_pipeline(tmp_path, monkeypatch):
    """A segment cut waits in line behind the batches being made: the workers are never left
    idle at a cut (drain only at the end), and the frames are those of a run without cuts."""
    src = make_video(tmp_path / "a.mkv", n=30, codec="ffv1")
    drains = []
    real = _Run.drain
    monkeypatch.setattr(_Run, "drain", lambda self, q: (drains.append(1), real(self, q)))
    cuts = []
    real_write = _Run.write

    def write(self, q, sink):
        cut = getattr(sink, "cut", None)
        if cut is not None:

            def counted(next_src, n):
                cuts.append(next_src)
                return cut(next_src, n)

            sink.cut = counted
        return real_write(self, q, sink)

    monkeypatch.setattr(_Run, "write", write)
    outs = {}
    for seg in (6, 10_000):
        eng = cuda_like(BlendNet(), "fp32", batch_size=2)
        interpolate_video(
            src,
            tmp_path / f"o{seg}.mkv",
            engine_factory=lambda need, e=eng: e,
            exp=1,
            codec="ffv1",
            segment_frames=seg,
        )
        outs[seg] = decode(tmp_path / f"o{seg}.mkv")[0]
    assert len(cuts) > 3 and len(drains) == 2  # both runs drained once, at their end
    assert len(outs[6]) == len(outs[10_000]) == 60
    assert all(np.array_equal(a, b) for a, b in zip(outs[6], outs[10_000]))


def test_large_motion_deferred_to_the_redo_without_a_wait(monkeypatch):
    """CUDA's form ("defer"): the large pair comes out NaN, its flag sends it to the redo after
    the download, where the sync-free select form makes it; the frames equal the subset form's,
    and no wait but the two downloads (one where nothing is large)."""
    net, a, b, _ = _large_motion_pair(monkeypatch)
    reqs = [Request(i, HALF) for i in range(2)]
    want = {}
    for form in ("subset", "defer"):
        net.large_motion = form
        eng = cuda_like(net, "fp32", batch_size=2)
        assert eng._defers == (form == "defer")
        seen, downloads = count_syncs(eng)
        with eng.stream():
            want[form] = eng.download(eng.make_unchecked(a, b, reqs), 64, 64)
        assert (seen == []) == (form == "defer")  # subset reads which pairs on the host
        assert downloads[0] == (2 if form == "defer" else 1)
    # each form makes each pair in a batch of another size: equal within float noise
    for x, y in zip(want["defer"], want["subset"]):
        assert np.abs(x.astype(int) - y).max() <= 2
    monkeypatch.setattr(ifnet_v4x, "LARGE_MOTION", 1e9)  # nothing large: one round trip
    net.large_motion = "defer"
    eng = cuda_like(net, "fp32", batch_size=2)
    seen, downloads = count_syncs(eng)
    with eng.stream():
        eng.download(eng.make_unchecked(a, b, reqs), 64, 64)
    assert downloads[0] == 1 and eng.fp32_fallbacks == 0


def test_auto_large_motion_form_is_subset_on_the_cpu_and_deferred_elsewhere():
    net = ifnet_v4x.IFNetV4x(ifnet_v4x.VERSIONS["4.0"], "4.0")
    assert net.large_motion_form(torch.device("cpu")) == "subset"
    assert net.large_motion_form(torch.device("cuda")) == "defer"
    assert (
        ifnet_v4x.IFNetV4x(ifnet_v4x.VERSIONS["4.6"]).large_motion_form(torch.device("cuda"))
        is None
    )


@pytest.mark.parametrize(("options", "per_pair"), [({"exp": 2}, 3), ({"fps": "60"}, 3)])
def test_the_memory_model_hears_how_many_frames_a_pair_holds(tmp_path, options, per_pair):
    """--exp 2 makes 3 frames a pair; 25 -> 60 fps up to 3 (2.4 a pair): the batch's made
    frames stay on the device until its download, so the memory model counts them."""
    src = make_video(tmp_path / "a.mkv", n=5, codec="ffv1")
    eng = cuda_like(BlendNet(), "fp32")
    interpolate_video(
        src, tmp_path / "o.mkv", engine_factory=lambda need: eng, codec="ffv1", **options
    )
    assert eng.outputs_per_pair == per_pair
    assert eng.backend._plans and all(k[-1] == per_pair for k in eng.backend._plans)
