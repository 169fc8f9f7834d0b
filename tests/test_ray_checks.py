"""--ray checks NVENC, --hwaccel and the output path on a worker's node, not on the head
(defect 7): a CPU-only head must not refuse a GPU cluster's job, and a node-local output path
must fail before the GPU work, not at the join after it."""

from __future__ import annotations

import pytest
from clips import make_video
from test_scaleout import OPTIONS, engine_config, start_local_ray

from rife_cli import pipeline
from rife_cli.errors import InputError, OutputError, UsageError
from rife_cli.pipeline.resume import work_dir_for
from rife_cli.scale.devices import WorkerConfig
from rife_cli.scale.ray_cluster import TOKEN, ShardActor
from rife_cli.video import sink, source


def _no_hardware_here(monkeypatch):
    """A head without a GPU: opening NVENC or NVDEC fails there."""

    def refuse(*args, **kw):
        raise AssertionError("a hardware check ran on the head")

    monkeypatch.setattr(source, "check_hwaccel", refuse)
    monkeypatch.setattr(sink, "_check_header", refuse)


def test_the_head_leaves_hardware_checks_to_the_workers(tmp_path, monkeypatch):
    src = make_video(tmp_path / "a.mp4", n=4)
    _no_hardware_here(monkeypatch)
    opts = pipeline.Options(exp=1, codec="h264_nvenc", hwaccel="cuda")
    job = pipeline.prepare(src, tmp_path / "o.mp4", None, opts, print, hardware=False)
    assert job.enc.codec == "h264_nvenc" and job.hwaccel is None
    with pytest.raises(AssertionError, match="on the head"):  # the plain run checks here
        pipeline.prepare(src, tmp_path / "o.mp4", None, opts, print)


def _actor(options=None) -> ShardActor:
    opts = {**OPTIONS, "resume": True, "force": False, "skip_existing": False, **(options or {})}
    return ShardActor(WorkerConfig("cpu", engine_config(), opts, 1))


def test_a_worker_that_cannot_see_the_heads_work_folder_stops_the_job(tmp_path):
    src = make_video(tmp_path / "a.mkv", n=4)
    out = tmp_path / "out.mkv"
    work = work_dir_for(out)
    work.mkdir(parents=True)
    # The folder exists on this node, but not the head's: its own local copy of the path.
    with pytest.raises(OutputError, match="not visible on node"):
        _actor().check(str(src), str(out), "the head's token")
    (work / TOKEN).write_text("the head's token")
    assert _actor().check(str(src), str(out), "the head's token") == []
    assert sorted(p.name for p in work.iterdir()) == [TOKEN]  # the write probe is gone
    with pytest.raises(InputError, match="not visible on node"):
        _actor().check(str(tmp_path / "elsewhere.mkv"), str(out), "the head's token")


def test_a_worker_checks_the_encoder_on_its_own_device(tmp_path):
    src = make_video(tmp_path / "a.mkv", n=4)
    out = tmp_path / "out.mkv"
    work_dir_for(out).mkdir(parents=True)
    (work_dir_for(out) / TOKEN).write_text("t")
    actor = _actor({"codec": "libx264", "preset": "no-such-preset"})
    with pytest.raises(UsageError, match="^on node "):
        actor.check(str(src), str(out), "t")


@pytest.mark.slow
def test_ray_stops_before_any_shard_when_a_worker_lacks_the_encoder(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from rife_cli.scale.devices import interpolate_sharded
    from rife_cli.scale.ray_cluster import ray_runner

    src = make_video(tmp_path / "a.mkv", n=12)
    _no_hardware_here(monkeypatch)  # the head: never asked
    start_local_ray(ray)
    try:
        runner, devices = ray_runner("local", "cpu,cpu")
        options = {**OPTIONS, "codec": "libx264", "preset": "no-such-preset"}
        with pytest.raises(UsageError, match="^on node "):
            interpolate_sharded(
                src, tmp_path / "out.mkv", devices, engine_config(), options, runner=runner
            )
        # No shard began: nothing but the plan and the head's token in the work folder.
        left = {p.name for p in work_dir_for(tmp_path / "out.mkv").iterdir()}
        assert not [n for n in left if n.startswith("shard_")], left
    finally:
        ray.shutdown()
