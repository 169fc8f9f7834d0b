"""Frames to the device once per batch and back in one transfer."""

from __future__ import annotations

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
    """With CUDA graphs (--compile on CUDA) a forward's outputs live in memory the next replay
    reuses: the engine marks each forward a new step and copies its frames out."""
    from rife_cli.engine import Interpolator

    steps = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    net = ReplayedBlend()
    eng = Interpolator(device="cpu", precision="fp32", network=net, batch_size=1, lanes=1)
    eng.cuda_graphs = True  # what compile=True on a CUDA device sets; the replay is stood in for
    f = frames(2)
    made = eng.interpolate(f[0], f[1], [0.25, 0.5, 0.75])
    assert len(steps) == 3
    for t, got in zip((0.25, 0.5, 0.75), made):
        want = (f[0].astype(float) * (1 - t) + f[1].astype(float) * t).round()
        assert np.abs(got.astype(float) - want).max() <= 1, t


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
    make = Interpolator.make

    def slow_make(self, *args):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)  # long enough for the next batch to arrive meanwhile
        try:
            return make(self, *args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(Interpolator, "make", slow_make)
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
