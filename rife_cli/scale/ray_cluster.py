"""`--ray`: the shards of one input as tasks on a Ray cluster's actors, one actor per GPU (or per
CPU worker), each keeping its model loaded between shards.

Ray does the placing (an actor asks for one GPU, or one CPU), the hand-out of shards to free
actors (ActorPool), and the recovery: an actor whose process dies is restarted and its task
retried, and the retried shard goes on from the segments it had finished. Inputs, outputs and the
resume folder must be on a path every node sees. Before any shard is handed out, every actor
checks on its own node what the head cannot: that it sees the input and the head's work folder
(a node-local output path fails here, not at the join after all the GPU work) and can write
there, and that --hwaccel and the encoder (NVENC) work on its GPU.
Imported only when --ray is given: Ray is an optional extra (`pip install 'rife-cli[ray]'`).
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from ..errors import InputError, Interrupted, OutputError, RifeError, UsageError

# An actor process that dies is restarted, and its shard retried, this many times.
RETRIES = 2


def _connect(address: str):
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'rife-cli[ray]'") from None
    if not ray.is_initialized():
        try:
            # "local": a cluster of this machine alone, started here (for trying it out)
            ray.init(
                address=None if address == "local" else address,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--ray {address}: cannot join the cluster ({exc})") from None
    return ray


def _devices(ray, devices: str | None) -> list[str]:
    """One actor per GPU in the cluster; `cpu,cpu,...` asks for that many CPU actors instead."""
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        if any(n != "cpu" for n in names) and any(n == "cpu" for n in names):
            raise UsageError("--ray with --devices: all cpu, or leave --devices out for the GPUs")
        if all(n == "cpu" for n in names):
            return names
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus == 0:
        raise UsageError(
            "--ray: the cluster has no GPUs; say how many CPU workers with --devices cpu,cpu,..."
        )
    return ["cuda"] * gpus


class _Events:
    """Collects what a shard reports, to be handed back with its result."""

    def __init__(self):
        self.messages: list[tuple] = []

    def put(self, item) -> None:
        if item[0] != "progress":
            self.messages.append(item)
        else:
            self.progress = item


# The head's mark in the work folder, read by every actor: the folder is the same one there.
TOKEN = "head-token"


class ShardActor:
    """One worker: a device's engine, kept between the shards it is given."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.factory = None

    def _see_input(self, inp: str) -> None:
        if not Path(inp).exists():
            raise InputError(
                f"{inp}: not visible on node {socket.gethostname()}; with --ray, inputs and "
                "outputs must be on a path every node sees (a shared filesystem)"
            )

    def check(self, inp: str, out: str, token: str) -> list[str]:
        """On this actor's node, before any shard: the input and the head's work folder are
        visible (the token the head wrote is there) and writable, and the job's decoder and
        encoder start on this node's device. Returns the warnings (e.g. no NVDEC for the
        codec: software decodes)."""
        from ..pipeline.resume import work_dir_for
        from ..pipeline.run import Options, prepare

        node = socket.gethostname()
        self._see_input(inp)
        folder = work_dir_for(Path(out))
        try:
            seen = (folder / TOKEN).read_text()
        except OSError:
            seen = None
        if seen != token:
            raise OutputError(
                f"{out}: its work folder {folder} made by the head is not visible on node "
                f"{node}; with --ray, outputs must be on a path every node sees (a shared "
                "filesystem)"
            )
        probe = folder / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"{folder}: not writable on node {node} ({exc.strerror})") from None
        warnings: list[str] = []
        try:
            prepare(inp, out, None, Options(**self.cfg.options), warnings.append, sharded=True)
        except RifeError as exc:
            raise type(exc)(f"on node {node}: {exc}") from None
        return [f"on node {node}: {w}" for w in warnings]

    def run(self, inp: str, out: str, shard):
        from .devices import engine_factory, run_shard

        self._see_input(inp)
        events = _Events()
        if self.factory is None:
            self.factory = engine_factory(self.cfg, lambda m: events.put(("warn", shard.index, m)))
        summary = run_shard(self.cfg, inp, out, shard, events, None, self.factory)
        return shard.index, summary.as_dict(), events.messages


def ray_runner(address: str, devices: str | None):
    """(runner for scaleout.interpolate_sharded, the device of each actor)."""
    ray = _connect(address)
    devs = _devices(ray, devices)

    def runner(job, shards, todo, cfgs, on_event, stop) -> None:
        from ray.util import ActorPool

        remote = ray.remote(ShardActor)
        actors = []
        for cfg in cfgs[: len(todo)]:
            gpu = cfg.device.startswith("cuda")
            opts = {"max_restarts": RETRIES, "max_task_retries": RETRIES}
            opts.update(num_gpus=1, num_cpus=1) if gpu else opts.update(num_cpus=1)
            if gpu:
                cfg.device = "cuda:0"  # Ray shows each actor its own GPU as the first one
            actors.append(remote.options(**opts).remote(cfg))
        try:
            # Each actor checks its node before any GPU work (the head may have no GPU, and may
            # be the only node that sees a node-local output path).
            from ..pipeline.resume import work_dir_for

            token = uuid.uuid4().hex
            (work_dir_for(job.out) / TOKEN).write_text(token)
            checks = [a.check.remote(str(job.inp), str(job.out), token) for a in actors]
            warned = set()
            for warnings in _results(ray, (ray.get(c) for c in checks), shards):
                for w in warnings:
                    if w not in warned:
                        warned.add(w)
                        on_event("warn", 0, w)
            pool = ActorPool(actors)
            results = pool.map_unordered(
                lambda actor, s: actor.run.remote(str(job.inp), str(job.out), s), todo
            )
            for index, summary, messages in _results(ray, results, shards):
                for kind, _, value in messages:
                    on_event(kind, index, value)
                on_event("progress", index, summary["frames_out"])
                on_event("done", index, summary)
                if stop is not None and stop.is_set():
                    raise Interrupted(stop.exit_code)
        finally:
            for a in actors:
                ray.kill(a)

    return runner, devs


def _results(ray, results, shards):
    """The pool's results; a shard that failed for good (after Ray's retries) ends the run with
    its own message."""
    try:
        yield from results
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RifeError):
            raise type(cause)(str(cause)) from None
        lines = [ln for ln in str(cause or exc).strip().splitlines() if ln.strip()]
        raise RifeError(
            f"a shard failed on the cluster: {lines[-1] if lines else type(exc).__name__}"
        ) from None
