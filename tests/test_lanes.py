"""CPU lanes: work side by side on single-threaded workers, and the engine's use of them."""

from __future__ import annotations

import contextvars
import os
import threading
from fractions import Fraction

import pytest
import torch
from clips import BlendNet
from conftest import golden_pair, psnr

from rife_cli.engine import Interpolator, Request
from rife_cli.engine.cpus import MAX_LANES
from rife_cli.engine.lanes import Lanes, in_lane

MARK = contextvars.ContextVar("mark", default="unset")
HALF = Fraction(1, 2)


def threads_of(pool: Lanes) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(pool.name + "-"))


@pytest.fixture
def lanes():
    pool = Lanes(2)
    yield pool
    pool.close()


def test_items_run_side_by_side_each_on_one_intra_op_thread(lanes):
    meet = threading.Barrier(2, timeout=10)  # broken (an error) unless both run at once

    def work(i):
        meet.wait()
        return i, threading.current_thread().name, torch.get_num_threads(), in_lane()

    out = lanes.map(work, [0, 1])
    assert [o[0] for o in out] == [0, 1]  # in the order given
    assert sorted(o[1] for o in out) == [f"{lanes.name}-0", f"{lanes.name}-1"]
    assert all(o[2] == 1 and o[3] for o in out)
    assert not in_lane()


def test_the_callers_thread_count_is_left_as_it_was(lanes):
    torch.set_num_threads(2)
    lanes.map(lambda i: i, [0, 1])
    assert torch.get_num_threads() == 2


def test_the_callers_modes_hold_inside_a_lane(lanes):
    def state(_):
        return (
            torch.is_inference_mode_enabled(),
            torch.is_autocast_enabled("cpu"),
            torch.get_autocast_dtype("cpu"),
            MARK.get(),
        )

    token = MARK.set("caller")
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            inside = lanes.map(state, [0, 1])
        outside = lanes.map(state, [0, 1])
    finally:
        MARK.reset(token)
    assert inside == [(True, True, torch.bfloat16, "caller")] * 2
    assert [o[:2] for o in outside] == [(False, False)] * 2


def test_a_map_inside_a_lane_runs_there_one_item_after_the_other(lanes):
    def outer(i):
        here = threading.current_thread().name
        inner = lanes.map(lambda j: threading.current_thread().name, [0, 1])
        return inner == [here, here]

    assert lanes.map(outer, [0, 1]) == [True, True]  # and no deadlock


def test_an_error_reaches_the_caller_after_every_item_finished(lanes):
    done = []

    def work(i):
        if i == 0:
            raise ValueError("boom")
        threading.Event().wait(0.2)
        done.append(i)
        return i

    with pytest.raises(ValueError, match="boom"):
        lanes.map(work, [0, 1])
    assert done == [1]
    assert lanes.map(lambda i: i * 2, [1, 2]) == [2, 4]  # still usable


def test_close_stops_the_threads_and_a_later_map_starts_them_again():
    pool = Lanes(2)
    assert threads_of(pool) == []  # nothing until needed
    pool.map(lambda i: i, [0, 1])
    assert threads_of(pool) == [f"{pool.name}-0", f"{pool.name}-1"]
    pool.close()
    assert threads_of(pool) == []
    assert pool.map(lambda i: i + 1, [0, 1]) == [1, 2]
    pool.close()
    assert threads_of(pool) == []


def test_cpu_engine_defaults_to_a_lane_per_core_and_a_pair_per_lane():
    cores = len(os.sched_getaffinity(0))
    eng = Interpolator("blend", device="cpu", network=BlendNet())
    assert eng.lanes == min(cores, MAX_LANES)
    assert eng.batch_size == eng.lanes
    one = Interpolator("blend", device="cpu", network=BlendNet(), lanes=1)
    assert one.batch_size == 1


@pytest.mark.parametrize("model", ["v3.6", "v4.0"])
def test_pairs_in_lanes_match_each_pair_alone_and_the_laneless_engine(model):
    # Three pairs: two go to the lanes as one job each, the third runs after them.
    pairs = [golden_pair(name) for name in ("I0", "I1", "I2")]
    eng = Interpolator(model, device="cpu", precision="fp32", lanes=2)
    plain = Interpolator(model, device="cpu", precision="fp32", lanes=1)
    a = eng.to_tensor([p[0] for p in pairs])
    b = eng.to_tensor([p[1] for p in pairs])
    together = eng.make(a, b, [Request(i, HALF) for i in range(3)])
    assert len(threads_of(eng.backend._lanes)) == 2
    alone = [eng.make(a[i : i + 1], b[i : i + 1], [Request(0, HALF)])[0] for i in range(3)]
    h, w = pairs[0][0].shape[:2]
    for x, y in zip(together, alone):
        if model == "v3.6":  # one v3.x pair's halves go to the lanes: computed alike
            assert torch.equal(x, y)
        else:  # one v4.0 pair runs on all cores with direct convolutions
            assert psnr(eng.to_arrays(x, h, w)[0], eng.to_arrays(y, h, w)[0]) >= 50
    for i, made in enumerate(together):
        ref = plain.make(a[i : i + 1], b[i : i + 1], [Request(0, HALF)])[0]
        assert psnr(eng.to_arrays(made, h, w)[0], plain.to_arrays(ref, h, w)[0]) >= 50
    eng.close()
    assert threads_of(eng.backend._lanes) == []


def test_one_v3_pair_sends_its_mirrored_halves_to_the_lanes():
    eng = Interpolator("v3.6", device="cpu", precision="fp32", lanes=2)
    block = eng.net.block2
    where = []
    real_tail = block.tail

    def tail(feat, s):
        where.append((threading.current_thread().name, tuple(feat.shape[:2])))
        return real_tail(feat, s)

    block.tail = tail
    a, b = golden_pair("I0")
    eng.interpolate(a, b, [0.5])
    # One conv0 for both (90 channels each), then each lane takes one half at a time.
    assert sorted(where) == [(f"{eng.backend._lanes.name}-{i}", (1, 90)) for i in (0, 1)]
    eng.close()


def test_close_never_hangs_on_a_lane_that_does_not_stop(monkeypatch):
    """A CI run hung for good in close(), a lane's native threads spinning after the writer had
    failed: a lane that does not stop in time is left behind (a daemon thread)."""
    import time

    from rife_cli.engine import lanes as lanes_mod

    monkeypatch.setattr(lanes_mod, "CLOSE_WAIT", 0.2)
    pool = Lanes(2)
    release = threading.Event()
    caller = threading.Thread(target=pool.map, args=(lambda i: release.wait(30), [0, 1]))
    caller.start()
    while len(threads_of(pool)) < 2:
        time.sleep(0.01)
    pool.close()  # returns with both lanes still busy: it did not wait for them to stop
    assert len(threads_of(pool)) == 2
    release.set()
    caller.join(timeout=30)
    assert not caller.is_alive()
