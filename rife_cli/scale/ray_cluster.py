"""`--ray`: the shards of one input as tasks on a Ray cluster's actors, one actor per GPU (or per
CPU worker), each keeping its model loaded between shards. A cluster without GPUs, with no
--devices, gets one CPU actor per node holding all that node's cores: the CPU engine spreads its
lanes over them, and one model per node costs less memory than one per core.

Ray does the placing (an actor asks for one GPU, or its CPUs), the hand-out of shards to free
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
from dataclasses import dataclass
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


@dataclass
class Placement:
    """One actor's device and what it asks Ray for."""

    device: str  # "cuda" or "cpu"
    cpus: int = 1
    gpus: int = 0
    node_id: str | None = None  # pinned to this node (a CPU worker per node)


def placements(ray, devices: str | None) -> list[Placement]:
    """One actor per GPU in the cluster; `cpu,cpu,...` asks for that many one-CPU actors; a
    cluster without GPUs gets one actor per live node, with every CPU of that node."""
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        if any(n != "cpu" for n in names) and any(n == "cpu" for n in names):
            raise UsageError("--ray with --devices: all cpu, or leave --devices out for the GPUs")
        if all(n == "cpu" for n in names):
            return [Placement("cpu") for _ in names]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return [Placement("cuda", cpus=1, gpus=1) for _ in range(gpus)]
    nodes = [
        n for n in ray.nodes() if n.get("Alive") and int(n.get("Resources", {}).get("CPU", 0)) >= 1
    ]
    if not nodes:
        raise UsageError("--ray: the cluster has no live node with a CPU or a GPU to run on")
    return [Placement("cpu", cpus=int(n["Resources"]["CPU"]), node_id=n["NodeID"]) for n in nodes]


def describe(places: list[Placement]) -> str:
    """What the summary says ran the job, e.g. "cuda x4 (Ray)" or "cpu: 3 nodes, 96 cores (Ray)"."""
    if any(p.node_id for p in places):
        cores = sum(p.cpus for p in places)
        nodes = f"{len(places)} node{'s' if len(places) > 1 else ''}"
        return f"cpu: {nodes}, {cores} cores (Ray)"
    return f"{places[0].device} x{len(places)} (Ray)"


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
            if self.cfg.device == "cpu" and self.cfg.threads:
                import torch

                torch.set_num_threads(self.cfg.threads)  # the cores Ray gave this actor
            self.factory = engine_factory(self.cfg, lambda m: events.put(("warn", shard.index, m)))
        summary = run_shard(self.cfg, inp, out, shard, events, None, self.factory)
        return shard.index, summary.as_dict(), events.messages


def ray_runner(address: str, devices: str | None, notice=None):
    """(runner for scale.devices.interpolate_sharded, the device of each actor). `notice` hears
    how a cluster without GPUs is used."""
    ray = _connect(address)
    places = placements(ray, devices)
    if places[0].node_id is not None and notice is not None:
        cores = ", ".join(str(p.cpus) for p in places)
        notice(
            f"--ray: no GPUs in the cluster; {len(places)} CPU worker(s), one per node "
            f"(cores: {cores})"
        )

    def runner(job, shards, todo, cfgs, on_event, stop) -> None:
        from ray.util import ActorPool

        remote = ray.remote(ShardActor)
        actors = []
        for cfg, place in zip(cfgs[: len(todo)], places):
            opts = {"max_restarts": RETRIES, "max_task_retries": RETRIES, "num_cpus": place.cpus}
            if place.gpus:
                opts["num_gpus"] = place.gpus
                cfg.device = "cuda:0"  # Ray shows each actor its own GPU as the first one
            else:
                cfg.threads = place.cpus
            if place.node_id is not None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    place.node_id, soft=False
                )
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

    runner.label = describe(places)
    return runner, [p.device for p in places]


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
