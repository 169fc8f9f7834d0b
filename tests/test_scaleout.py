"""--devices and --ray: one input cut into shards made by worker processes (or Ray actors) and
joined, several inputs spread over workers; the output is the one a single process makes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import BlendNet, SlowBlendNet, blend_engine, decode
from media import Clip, Track, make_clip, make_interlaced, read_media, ts_recording

from rife_cli.errors import RifeError, UsageError
from rife_cli.pipeline import interpolate_video
from rife_cli.pipeline.resume import work_dir_for
from rife_cli.scale import devices
from rife_cli.scale.devices import interpolate_files, interpolate_sharded, parse_devices
from rife_cli.scale.shards import cut

OPTIONS = {"exp": 1, "codec": "ffv1", "scene_threshold": 0.2}


def start_local_ray(ray) -> None:
    """A two-CPU Ray cluster in this machine whose workers import the tests' modules."""
    tests_dir = str(Path(__file__).parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": tests_dir + os.pathsep + os.environ.get("PYTHONPATH", "")}
        },
    )


def engine_config(net=None) -> dict:
    return {"model": "blend", "network": net or BlendNet(), "precision": "fp32", "batch_size": 2}


def source(tmp_path: Path, n: int = 40, name: str = "in.mkv") -> Path:
    clip = Clip(".mkv", rate=Fraction(24000, 1001), n=n, audio=[Track()])
    return make_clip(tmp_path / name, clip)


def one_process(src: Path, out: Path, **options):
    return interpolate_video(
        src, out, engine_factory=lambda need: blend_engine(), **{**OPTIONS, **options}
    )


def same_video(a: Path, b: Path) -> None:
    fa, ta, _ = decode(a)
    fb, tb, _ = decode(b)
    assert len(fa) == len(fb)
    assert ta == tb
    for i, (x, y) in enumerate(zip(fa, fb)):
        assert np.array_equal(x, y), i


def test_cut_covers_the_input_once():
    shards = cut(Fraction(1, 10), Fraction(25), 100, None, 3)
    assert [s.first for s in shards] == [None, Fraction(1, 10) + Fraction(33, 25),
                                         Fraction(1, 10) + Fraction(67, 25)]  # fmt: skip
    assert [s.end for s in shards] == [s.first for s in shards[1:]] + [None]
    assert shards[-1].last and not shards[0].last
    assert len(cut(Fraction(0), Fraction(25), 12, None, 4)) == 1  # too short to cut in four


def test_devices_are_named_and_checked():
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    with pytest.raises(UsageError, match="cuda"):
        parse_devices("cuda:7")
    with pytest.raises(UsageError):
        parse_devices(" , ")


def test_two_workers_make_the_same_output_as_one_process(tmp_path):
    src = source(tmp_path)
    one = one_process(src, tmp_path / "one.mkv")
    warnings: list[str] = []
    done = []
    two = interpolate_sharded(
        src,
        tmp_path / "two.mkv",
        ["cpu", "cpu"],
        engine_config(),
        OPTIONS,
        progress=done.append,
        warn=warnings.append,
    )
    same_video(tmp_path / "one.mkv", tmp_path / "two.mkv")
    assert two.frames_out == one.frames_out == 80
    assert done and done[-1] == 80  # progress of the whole job
    a, b = read_media(tmp_path / "one.mkv"), read_media(tmp_path / "two.mkv")
    assert a.tracks == b.tracks and b.tracks[0][0] == "audio"
    assert not work_dir_for(tmp_path / "two.mkv").exists()
    assert not any("error" in w for w in warnings)
    assert not any("cannot be cut by time" in w for w in warnings)  # B-frames are no restart


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".ts"])
def test_b_frames_and_a_jump_are_no_clock_restart(tmp_path, ext):
    """Presentation times step back at every B-frame (Matroska has no decoding times for the
    first packet, and an ffmpeg-made remux flagged the whole file so); only a clock that starts
    again keeps an input from being cut into shards."""
    from rife_cli.video.source import clock_restarts, probe

    clip = make_clip(tmp_path / f"b{ext}", Clip(ext, n=60, rate=Fraction(24000, 1001)))
    assert not clock_restarts(probe(clip))
    joined = tmp_path / "joined.ts"
    first = ts_recording(tmp_path / "a.ts", Fraction(1), 20, Fraction(0), mark=5)
    later = ts_recording(tmp_path / "b.ts", Fraction(8), 20, Fraction(0), mark=5)
    again = ts_recording(tmp_path / "c.ts", Fraction(1), 20, Fraction(0), mark=5)
    joined.write_bytes(first + later)
    assert not clock_restarts(probe(joined))  # a jump forward: cut by time as any other
    joined.write_bytes(first + later + again)
    assert clock_restarts(probe(joined))


def _kill_a_worker_once_it_has_a_segment(out: Path, killed: list) -> None:
    folder = work_dir_for(out) / "shard_001"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if list(folder.glob("seg_*.mkv")):
            for p in multiprocessing.active_children():
                if p.name.startswith("rife-"):
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    return
        time.sleep(0.005)


def test_a_killed_worker_fails_its_shard_and_resume_finishes_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("RIFE_SEGMENT_FRAMES", "6")
    src = source(tmp_path, n=80)
    one_process(src, tmp_path / "one.mkv")
    out = tmp_path / "two.mkv"
    options = {**OPTIONS, "segment_frames": 6, "segment_seconds": 0}
    killed: list = []
    watcher = threading.Thread(target=_kill_a_worker_once_it_has_a_segment, args=(out, killed))
    watcher.start()
    with pytest.raises(RifeError, match="--resume") as err:
        interpolate_sharded(src, out, ["cpu", "cpu"], engine_config(SlowBlendNet()), options)
    watcher.join()
    assert killed, "no worker was running to kill"
    assert "died" in str(err.value) or "failed" in str(err.value)
    assert not out.exists()
    assert list(work_dir_for(out).glob("shard_*/seg_*.mkv"))  # finished work kept
    notes: list[str] = []
    with pytest.raises(UsageError, match="other options"):  # another engine: not this job
        interpolate_sharded(src, out, ["cpu", "cpu"], engine_config(), {**options, "resume": True})
    interpolate_sharded(
        src,
        out,
        ["cpu"],  # fewer devices than shards now: they run one after the other
        engine_config(SlowBlendNet(0)),
        {**options, "resume": True},
        warn=notes.append,
    )
    assert any("resuming" in n for n in notes)
    same_video(tmp_path / "one.mkv", out)


def test_a_stop_request_stops_every_worker(tmp_path):
    from rife_cli.errors import Interrupted
    from rife_cli.pipeline import StopRequest

    src = source(tmp_path, n=60)
    out = tmp_path / "o.mkv"
    stop = StopRequest()
    timer = threading.Timer(3.0, stop.request, args=(143,))
    timer.start()
    options = {**OPTIONS, "segment_frames": 6, "segment_seconds": 0}
    with pytest.raises(Interrupted) as err:
        interpolate_sharded(
            src, out, ["cpu", "cpu"], engine_config(SlowBlendNet(0.2)), options, stop=stop
        )
    timer.cancel()
    assert err.value.exit_code == 143 and "--resume" in str(err.value)
    assert not multiprocessing.active_children()
    assert not out.exists()


def test_several_files_are_spread_over_the_workers(tmp_path):
    srcs = [source(tmp_path, n=12, name=f"in{i}.mkv") for i in range(3)]
    outdir = tmp_path / "out"
    outdir.mkdir()
    ended: dict = {}
    interpolate_files(
        srcs,
        outdir,
        ["cpu", "cpu"],
        engine_config(),
        OPTIONS,
        warn=lambda m: None,
        on_done=lambda inp, summary, error: ended.__setitem__(inp, (summary, error)),
    )
    assert sorted(ended) == sorted(srcs)
    for src in srcs:
        summary, error = ended[src]
        assert error is None and summary.frames_out == 24
        ref = one_process(src, tmp_path / f"ref_{src.stem}.mkv")
        same_video(Path(summary.output), Path(ref.output))


@pytest.mark.slow
def test_ray_local_cluster_makes_the_same_output(tmp_path):
    ray = pytest.importorskip("ray")
    from rife_cli.scale.ray_cluster import ray_runner

    src = source(tmp_path)
    one_process(src, tmp_path / "one.mkv")
    start_local_ray(ray)
    try:
        runner, devices = ray_runner("local", "cpu,cpu")
        s = interpolate_sharded(
            src, tmp_path / "ray.mkv", devices, engine_config(), OPTIONS, runner=runner
        )
        assert s.frames_out == 80
        same_video(tmp_path / "one.mkv", tmp_path / "ray.mkv")
        # No --devices on a cluster without GPUs: one worker per node, with all its CPUs.
        heard = []
        runner, devices = ray_runner("local", None, heard.append)
        assert devices == ["cpu"]
        assert heard == ["--ray: no GPUs in the cluster; 1 CPU worker(s), one per node (cores: 2)"]
        s = interpolate_sharded(
            src, tmp_path / "nodes.mkv", devices, engine_config(), OPTIONS, runner=runner
        )
        assert s.device == "cpu: 1 node, 2 cores (Ray)"
        same_video(tmp_path / "one.mkv", tmp_path / "nodes.mkv")
    finally:
        ray.shutdown()


class _FakeRay:
    def __init__(self, gpus, nodes):
        self.gpus, self._nodes = gpus, nodes

    def cluster_resources(self):
        return {"CPU": 99.0, "GPU": float(self.gpus)} if self.gpus else {"CPU": 99.0}

    def nodes(self):
        return self._nodes


def _node(node_id, cpus, alive=True):
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": float(cpus)}}


def test_ray_placements_gpus_cpu_lists_and_cpu_only_clusters():
    from rife_cli.scale.ray_cluster import Placement, describe, placements

    nodes = [_node("a", 16), _node("b", 8), _node("dead", 64, alive=False), _node("c", 0)]
    per_node = placements(_FakeRay(0, nodes), None)
    assert per_node == [Placement("cpu", 16, 0, "a"), Placement("cpu", 8, 0, "b")]
    assert describe(per_node) == "cpu: 2 nodes, 24 cores (Ray)"
    gpus = placements(_FakeRay(3, nodes), None)
    assert gpus == [Placement("cuda", 1, 1)] * 3 and describe(gpus) == "cuda x3 (Ray)"
    assert placements(_FakeRay(3, nodes), "cpu,cpu") == [Placement("cpu")] * 2
    with pytest.raises(UsageError, match="all cpu"):
        placements(_FakeRay(3, nodes), "cpu,cuda")
    with pytest.raises(UsageError, match="no live node"):
        placements(_FakeRay(0, [_node("dead", 8, alive=False)]), None)


def test_an_interlaced_input_is_judged_once_and_sharded_as_fields(tmp_path, monkeypatch):
    """The coordinator looks at the first frames (idet) and tells the shards what it decided;
    the joined output is the one process's, and the summary counts frames, not fields, and says
    how it was deinterlaced."""
    from rife_cli.pipeline.run import Options, prepare
    from rife_cli.video import filters

    src = tmp_path / "in.mkv"
    make_interlaced(src, "bff", n=24)
    one = one_process(src, tmp_path / "one.mkv")
    seen = []

    def runner(job, shards, todo, cfgs, on_event, stop):
        seen.extend(cfg.options for cfg in cfgs)
        with monkeypatch.context() as m:  # a shard's prepare must not decode the start again
            m.setattr(filters, "examine", lambda *a, **k: pytest.fail("idet run again"))
            shard = prepare(src, job.out, None, Options(**cfgs[0].options), print, sharded=True)
        assert shard.info.interlace == job.info.interlace and shard.info.rate == job.info.rate
        devices._run_local(job, shards, todo, cfgs, on_event, stop)

    two = interpolate_sharded(src, tmp_path / "two.mkv", ["cpu", "cpu"], engine_config(),
                              OPTIONS, runner=runner)  # fmt: skip
    same_video(tmp_path / "one.mkv", tmp_path / "two.mkv")
    assert seen and all(o["interlace"][0] == "bff" for o in seen)
    assert two.frames_in == one.frames_in == 24 and two.frames_out == one.frames_out == 48
    assert two.deinterlaced == one.deinterlaced and "bottom field first" in two.deinterlaced
    # a progressive source: the shards are told not to look
    seen.clear()
    interpolate_sharded(source(tmp_path), tmp_path / "p.mkv", ["cpu", "cpu"], engine_config(),
                        OPTIONS, runner=runner)  # fmt: skip
    assert seen and all(o["deinterlace"] == "off" and "interlace" not in o for o in seen)


def test_a_variable_rate_input_is_cut_by_time_and_joins_the_same(tmp_path):
    from clips import make_video

    pts = [0, 40, 80, 200, 240, 280, 320, 360, 400, 520, 560, 600, 640, 680, 720, 760, 800]
    pts += [840 + 40 * k for k in range(12)]
    src = make_video(
        tmp_path / "vfr.mkv",
        n=len(pts),
        w=64,
        h=48,
        codec="ffv1",
        pts=pts,
        time_base=Fraction(1, 1000),
        rate=Fraction(25),
    )
    options = {**OPTIONS, "fps": "50", "exp": None}
    one = one_process(src, tmp_path / "one.mkv", fps="50", exp=None)
    two = interpolate_sharded(src, tmp_path / "two.mkv", ["cpu", "cpu"], engine_config(), options)
    assert two.frames_out == one.frames_out
    same_video(tmp_path / "one.mkv", tmp_path / "two.mkv")


def test_dedup_and_png_are_refused_for_one_sharded_input(tmp_path):
    src = source(tmp_path, n=12)
    with pytest.raises(UsageError, match="--dedup runs in one process"):
        interpolate_sharded(src, tmp_path / "o.mkv", ["cpu", "cpu"], engine_config(),
                            {**OPTIONS, "dedup": True})  # fmt: skip
    with pytest.raises(UsageError, match="PNG output is written by one process"):
        interpolate_sharded(src, tmp_path / "o", ["cpu", "cpu"], engine_config(),
                            {**OPTIONS, "png": True, "codec": None})  # fmt: skip
    assert not list(tmp_path.glob(".o*"))  # nothing started


def test_an_input_whose_clock_starts_again_is_made_in_one_piece(tmp_path):
    """Two recordings joined (cat a.ts b.ts), the second's clock back at the first's start: the
    source times shards are cut at repeat, so two workers made half the output (276 of 550
    frames), silently. It is made in one piece, said, the same as one process, the sound moved
    with the pictures there too."""
    src = tmp_path / "joined.ts"
    first = ts_recording(tmp_path / "a.ts", Fraction(1), 50, Fraction(0), mark=25)
    second = ts_recording(tmp_path / "b.ts", Fraction(1), 50, Fraction(0), mark=25)
    src.write_bytes(first + second)
    one = one_process(src, tmp_path / "one.mkv", scene_threshold=0)
    said: list[str] = []
    options = {**OPTIONS, "scene_threshold": 0}
    two = interpolate_sharded(
        src, tmp_path / "two.mkv", ["cpu", "cpu"], engine_config(), options, warn=said.append
    )
    assert any("cannot be cut by time: made in one piece" in w for w in said), said
    assert two.frames_out == one.frames_out == 200
    same_video(tmp_path / "one.mkv", tmp_path / "two.mkv")

    def sound(path):
        with av.open(str(path)) as c:
            return [(f.time, f.to_ndarray().tobytes()) for f in c.decode(audio=0)]

    assert sound(tmp_path / "two.mkv") == sound(tmp_path / "one.mkv")
