"""Frames to the device once per batch and back in one transfer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from clips import blend_engine, interpolate_blended, make_video

from rife_cli.engine import Request


def frames(n, h=40, w=56):
    rng = np.random.default_rng(3)
    return [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(n)]


def test_pair_tensors_convert_each_frame_once(monkeypatch):
    eng = blend_engine()
    f = frames(5)
    converted = []
    to_tensor = eng.to_tensor
    monkeypatch.setattr(eng, "to_tensor", lambda fs: converted.append(len(fs)) or to_tensor(fs))
    # Consecutive pairs (views of one upload), then pairs with gaps and a repeat (copied rows).
    for firsts, seconds, uploads in (
        ([f[0], f[1], f[2]], [f[1], f[2], f[3]], 4),
        ([f[0], f[2], f[3]], [f[1], f[3], f[4]], 5),
        ([f[4], f[0]], [f[0], f[4]], 2),
    ):
        converted.clear()
        a, b = eng.to_pair_tensors(firsts, seconds)
        assert converted == [uploads]
        for got, want in ((a, firsts), (b, seconds)):
            assert got.shape[0] == len(want)
            assert got.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(got, to_tensor(want))


def test_outputs_come_back_together_and_in_order():
    eng = blend_engine()
    f = frames(3)
    a, b = eng.to_pair_tensors(f[:2], f[1:])
    reqs = [Request(0, t) for t in (0.25, 0.5)] + [Request(1, 0.75)]
    outs = eng.make(a, b, reqs)
    together = eng.to_arrays(outs, 40, 56)
    assert [x.shape for x in together] == [(40, 56, 3)] * 3
    for o, arr in zip(outs, together):
        assert np.array_equal(eng.to_arrays(o, 40, 56)[0], arr)
    mid = (f[0].astype(float) * 0.75 + f[1].astype(float) * 0.25).round()
    assert np.abs(together[0].astype(float) - mid).max() <= 1


def test_pipeline_uploads_each_source_frame_once_per_batch(tmp_path, monkeypatch):
    from rife_cli.engine import Interpolator

    src = make_video(tmp_path / "a.mkv", n=7, codec="ffv1")
    sizes = []
    to_tensor = Interpolator.to_tensor
    monkeypatch.setattr(
        Interpolator, "to_tensor", lambda self, fs: sizes.append(len(fs)) or to_tensor(self, fs)
    )
    interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", scene_threshold=0)
    # Six pairs in batches of two: three frames a batch, not four.
    assert sizes == [3, 3, 3]


class ReplayedBlend(torch.nn.Module):
    """Like a CUDA-graph replay: every call returns the same output buffer, overwritten."""

    family = "v4"
    pad_base = 32

    def __init__(self):
        super().__init__()
        self.buffer = None

    def forward(self, a, b, t, scale=1.0):
        out = a * (1 - t.view(-1, 1, 1, 1)) + b * t.view(-1, 1, 1, 1)
        if self.buffer is None or self.buffer.shape != out.shape:
            self.buffer = torch.empty_like(out)
        return self.buffer.copy_(out)


def test_graph_replays_do_not_overwrite_made_frames(monkeypatch):
    """With CUDA graphs (--cuda-graphs) a forward's outputs live in memory the next replay reuses:
    the CUDA backend marks each forward a new step and copies its frames out."""
    from rife_cli.engine import Interpolator
    from rife_cli.engine.cuda import CudaBackend

    steps = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    net = ReplayedBlend()
    eng = Interpolator(device="cpu", precision="fp32", network=net, batch_size=1, lanes=1)
    f = frames(2)
    x = eng.to_tensor(f)
    # The CUDA backend's graph handling, on CPU tensors: the replay is stood in for.
    eng.backend = CudaBackend(torch.device("cpu"), compile=True, cuda_graphs=True)
    ts = [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)]
    made = eng.to_arrays(eng.make(x[0:1], x[1:2], [Request(0, t) for t in ts]), 40, 56)
    assert len(steps) == 3
    for t, got in zip((0.25, 0.5, 0.75), made):
        want = (f[0].astype(float) * (1 - t) + f[1].astype(float) * t).round()
        assert np.abs(got.astype(float) - want).max() <= 1, t


def test_graph_forwards_keep_one_batch_shape(monkeypatch):
    """Under CUDA graphs every forward has the first batch's shape (a short last batch is padded,
    its padding dropped): no recompilation per batch or dyadic level size."""
    from rife_cli.engine import Interpolator
    from rife_cli.engine.cuda import CudaBackend

    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    shapes = []

    class Recording(ReplayedBlend):
        def forward(self, a, b, t, scale=1.0):
            shapes.append(a.shape[0])
            return super().forward(a, b, t, scale)

    eng = Interpolator(device="cpu", precision="fp32", network=Recording(), batch_size=3, lanes=1)
    x = eng.to_tensor(frames(5))
    eng.backend = CudaBackend(torch.device("cpu"), compile=True, cuda_graphs=True)
    reqs = [Request(i, 0.5) for i in range(4)]
    outs = eng.make(x[:4], x[1:], reqs)
    assert shapes == [3, 3]  # 3 + 1 pairs, the second forward padded to 3
    want = eng.to_arrays([(x[i : i + 1] + x[i + 1 : i + 2]) / 2 for i in range(4)], 40, 56)
    for got, w in zip(eng.to_arrays(outs, 40, 56), want):
        assert np.abs(got.astype(int) - w.astype(int)).max() <= 1


def test_pipeline_keeps_two_batches_in_flight_in_order(tmp_path, monkeypatch):
    """The next batch is made while the one before it is finished and queued; frames come out
    the same and in order as with one batch at a time, and no worker outlives the run."""
    import threading
    import time

    from clips import decode

    from rife_cli.engine import Interpolator
    from rife_cli.pipeline import interpolate_video

    src = make_video(tmp_path / "a.mkv", n=9, codec="ffv1")
    active, most = [0], [0]
    lock = threading.Lock()
    make = Interpolator.make_unchecked

    def slow_make(self, *args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)  # long enough for the next batch to arrive meanwhile
        try:
            return make(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(Interpolator, "make_unchecked", slow_make)
    runs = {}
    for depth in (2, 1):
        monkeypatch.setattr(Interpolator, "concurrent_batches", property(lambda self, d=depth: d))
        most[0] = 0
        engine = blend_engine()
        interpolate_video(
            src,
            tmp_path / f"o{depth}.mkv",
            engine_factory=lambda need, e=engine: e,
            exp=2,
            codec="ffv1",
        )
        runs[depth] = (most[0], decode(tmp_path / f"o{depth}.mkv")[0])
        assert not [t for t in threading.enumerate() if t.name.startswith("rife-batch")]
    assert runs[2][0] == 2 and runs[1][0] == 1
    assert len(runs[2][1]) == len(runs[1][1]) == 36
    assert all(np.array_equal(a, b) for a, b in zip(runs[2][1], runs[1][1]))


def test_two_batches_only_where_they_help():
    from clips import BlendNet

    from rife_cli.engine import Interpolator

    def engine(**kw):
        return Interpolator(device="cpu", precision="fp32", network=BlendNet(), **kw)

    assert engine(lanes=2).concurrent_batches == 2  # lanes take the next batch's pairs
    assert engine(lanes=1).concurrent_batches == 1  # one forward on all cores: nothing to gain
    assert engine(lanes=2, compile=True).concurrent_batches == 1  # compiled: one caller
