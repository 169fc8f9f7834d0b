"""Every device of a box at once (`--devices`): one worker process per device.

One input is cut into shards (rife_cli.scale.shards), one per device; each worker makes its shard's
segments, and this process joins them with the source's other tracks, as a one-device run would.
Several inputs are handed out whole, the next file to whichever worker is free. Workers report
progress, warnings and their result over one queue; a worker that dies fails its shard (or file)
with a message, and the finished segments of every shard stay for --resume.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

from ..engine.cpus import usable_cores
from ..errors import Interrupted, RifeError, UsageError
from ..pipeline.resume import input_identity, work_dir_for
from ..pipeline.run import (
    RESUME_NEUTRAL,
    Options,
    StopRequest,
    Summary,
    finish_video,
    install_stop_handlers,
    prepare,
)
from ..video.source import clock_restarts
from .shards import Shard, cut, frames_out, load_or_save_plan, segment_files

# How often the coordinator looks at its workers when no message comes.
POLL_SECONDS = 0.2


def parse_devices(text: str) -> list[str]:
    """`cuda:0,cuda:1`, `all` (every CUDA device), `cpu,cpu` -> device names, checked."""
    text = text.strip()
    if text == "all":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError("--devices all: no CUDA device on this machine; use e.g. cpu,cpu")
        return [f"cuda:{i}" for i in range(n)]
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise UsageError("--devices: give a list such as cuda:0,cuda:1 or cpu,cpu, or all")
    from ..engine import pick_device

    for name in names:
        if name == "auto":
            raise UsageError("--devices: name each device (cuda:0, cpu), or use all")
        pick_device(name)  # a usage error for a device this machine lacks
    return names


@dataclass
class WorkerConfig:
    """What a worker process needs to build its engine and run the pipeline."""

    device: str
    engine: dict  # interpolator_for's options (model, precision, scale, batch_size, ...)
    options: dict  # pipeline Options, as keyword arguments
    # CPU workers sharing one machine: cores each (0: leave torch's default)
    threads: int = 0


def engine_factory(cfg: WorkerConfig, warn: Callable[[str], None]):
    """Engines for this worker's device, made on first use and kept."""
    from ..engine import interpolator_for

    engines: dict = {}

    def factory(need):
        if need not in engines:
            engines[need] = interpolator_for(need, device=cfg.device, notice=warn, **cfg.engine)
        return engines[need]

    return factory


def _worker_setup(cfg: WorkerConfig) -> StopRequest:
    """In a fresh worker process: its share of the cores, and the signals that stop it cleanly
    (the coordinator forwards a stop; it speaks for the workers)."""
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    return install_stop_handlers()


def _report_failure(events, key, exc: BaseException) -> int:
    if isinstance(exc, Interrupted):
        events.put(("stopped", key, exc.exit_code))
        return exc.exit_code
    if isinstance(exc, RifeError):
        events.put(("error", key, str(exc)))
        return exc.exit_code
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    events.put(("error", key, f"{type(exc).__name__}: {msg[:200]}"))
    return 1


def shard_worker(cfg: WorkerConfig, inp: str, out: str, shard: Shard, events) -> None:
    """Worker process: one shard of one input."""
    key = shard.index
    stop = _worker_setup(cfg)
    code = 0
    try:
        summary = run_shard(cfg, inp, out, shard, events, stop)
        events.put(("done", key, summary.as_dict()))
    except BaseException as exc:  # noqa: BLE001 - reported; the coordinator decides what it means
        code = _report_failure(events, key, exc)
    _exit(events, code)


def _exit(events, code: int) -> None:
    """End a worker: its messages flushed to the coordinator first, then no atexit work (the
    coordinator owns the terminal and the output)."""
    events.close()
    events.join_thread()
    os._exit(code)


def run_shard(
    cfg: WorkerConfig, inp: str, out: str, shard: Shard, events, stop=None, factory=None
) -> Summary:
    """One shard, in whatever process calls it (a local worker or a Ray actor, which passes the
    engine `factory` it keeps between shards)."""
    from ..pipeline.run import interpolate_video

    key = shard.index

    def warn(msg: str) -> None:
        events.put(("warn", key, msg))

    last = [0.0]

    def progress(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1:
            last[0] = now
            events.put(("progress", key, n))

    summary = interpolate_video(
        inp,
        out,
        engine_factory=factory or engine_factory(cfg, warn),
        progress=progress,
        warn=warn,
        stop=stop,
        shard=shard,
        **cfg.options,
    )
    events.put(("progress", key, summary.frames_out))
    return summary


def file_worker(cfg: WorkerConfig, jobs, events, output_dir: str | None) -> None:
    """Worker process: whole files from `jobs` until it hands out None."""
    from ..pipeline.run import interpolate_video

    stop = _worker_setup(cfg)
    factory = None
    code = 0
    while (job := jobs.get()) is not None:
        key = job

        def warn(msg: str, key=key) -> None:
            events.put(("warn", key, msg))

        factory = factory or engine_factory(cfg, warn)
        try:
            summary = interpolate_video(
                job,
                None,
                output_dir=output_dir,
                engine_factory=factory,
                warn=warn,
                stop=stop,
                **cfg.options,
            )
            events.put(("done", key, summary.as_dict()))
        except BaseException as exc:  # noqa: BLE001 - reported, and the next file goes on
            code = _report_failure(events, key, exc)
            if isinstance(exc, Interrupted):
                break
    _exit(events, code if stop.is_set() else 0)


class _Processes:
    """Worker processes and their one queue of events; stops them all on the way out."""

    def __init__(self):
        self.ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self.events = self.ctx.Queue()
        self.procs: dict[object, tuple[mp.Process, str]] = {}  # key -> (process, device)
        self.forwarded = False

    def start(self, key, device: str, target, *args) -> None:
        p = self.ctx.Process(target=target, args=args, daemon=False, name=f"rife-{device}")
        p.start()
        self.procs[key] = (p, device)

    def alive(self) -> list:
        return [k for k, (p, _) in self.procs.items() if p.is_alive()]

    def forward_stop(self, stop: StopRequest | None) -> None:
        """A stop asked of this process reaches every worker once (they finish their pair)."""
        if stop is not None and stop.is_set() and not self.forwarded:
            self.forwarded = True
            for p, _ in self.procs.values():
                if p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)

    def events_until_done(self, stop: StopRequest | None, more=lambda: False):
        """Every event, then ("exit", key, exit code) as each worker ends, until all have ended,
        none is still to start (`more`), and the queue is empty."""
        exited: set = set()
        while True:
            self.forward_stop(stop)
            try:
                yield self.events.get(timeout=POLL_SECONDS)
                continue
            except queue.Empty:
                pass
            for key, (p, _) in list(self.procs.items()):
                if key not in exited and not p.is_alive():
                    exited.add(key)
                    yield ("exit", key, p.exitcode)
            if not self.alive() and not more():
                try:  # what the last ones sent before they ended
                    while True:
                        yield self.events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    return

    def close(self) -> None:
        for p, _ in self.procs.values():
            if p.is_alive():
                p.kill()
        for p, _ in self.procs.values():
            p.join(5)
        self.events.close()


def _restarts(shards: list[Shard], out: Path) -> tuple:
    """Where the pictures' clock started again, as the one shard of such an input recorded it
    (pipeline.run._put_in_place); none where the input was cut in several."""
    if len(shards) != 1:
        return ()
    try:
        return tuple(Fraction(r) for r in json.loads(shards[0].done_marker(out).read_text()))
    except (OSError, ValueError, TypeError):
        return ()  # a marker from before this was recorded: each track goes on on its own


def _fingerprint(job, engine: dict) -> dict:
    """What a resumed run must share with the one it continues (the device count may differ)."""
    return {
        "input": input_identity(job.inp),
        "options": {
            f.name: str(getattr(job.opts, f.name))
            for f in fields(Options)
            if f.name not in RESUME_NEUTRAL
        },
        "engine": {k: str(v) for k, v in sorted(engine.items())},
    }


def _cores_per_worker(devices: list[str]) -> int:
    """CPU workers share the cores this process may use (its affinity mask) evenly."""
    cpu = sum(1 for d in devices if d == "cpu")
    return max(1, usable_cores() // cpu) if cpu else 0


def interpolate_sharded(
    inp: Path,
    output: Path | None,
    devices: list[str],
    engine: dict,
    options: dict,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
    runner: Callable | None = None,
) -> Summary:
    """One input on several devices: cut into one shard per device, made in parallel, joined.
    `runner(job, shards, todo, cfgs, on_event)` runs the shards elsewhere (Ray); default: local
    worker processes."""
    started = time.perf_counter()
    warn = warn or (lambda m: None)
    opts = Options(**options)
    # With a runner (Ray) the devices are elsewhere: it checks --hwaccel and the encoder there.
    job = prepare(inp, output, None, opts, warn, sharded=False, hardware=runner is None)
    if job.skipped:
        return Summary(input=str(job.inp), output=str(job.out), skipped=True)
    if job.png:
        raise UsageError("PNG output is written by one process; leave out --devices / --ray")
    if opts.dedup:
        # which frames repeat depends on the frames before: a shard cannot tell at its start
        raise UsageError("--dedup runs in one process; leave out --devices / --ray for it")
    info, out = job.info, job.out
    pieces = len(devices)
    if pieces > 1 and clock_restarts(info):
        pieces = 1
        warn(
            f"{inp}: its timestamps start again (recordings joined?), so it cannot be cut by "
            "time: made in one piece, on one device"
        )
    planned = cut(info.start, info.rate, info.frames, info.duration, pieces)
    shards, resumed = load_or_save_plan(
        out, planned, _fingerprint(job, engine), opts.resume, opts.force
    )
    if opts.resume and not resumed and work_dir_for(out).is_dir():
        warn(f"no matching sharded run to resume for {out.name}; starting from zero")
    todo = [s for s in shards if not s.done_marker(out).exists()]
    if resumed:
        warn(f"resuming {out.name}: {len(shards) - len(todo)} of {len(shards)} shards finished")
    if total and info.frames:
        total(int(info.frames * job.target.factor))
    threads = _cores_per_worker(devices)
    # The plan above wiped the folder unless it resumes: each shard goes on from what it finished
    # (so a shard retried after its worker died continues too).
    worker_opts = {**options, "resume": True, "force": False, "skip_existing": False}
    # Deinterlaced or not as decided here: the shards do not look at the first frames again.
    if info.interlace is None:
        worker_opts["deinterlace"] = "off"
    else:
        worker_opts["interlace"] = (info.interlace.order, info.interlace.evidence)
    cfgs = [WorkerConfig(d, engine, worker_opts, threads) for d in devices]
    done: dict[int, dict] = {}
    failed: dict[int, str] = {}
    made = {s.index: 0 for s in shards}
    stopped = [0]

    def on_event(kind, key, value) -> None:
        if kind == "progress":
            made[key] = value
            if progress:
                progress(sum(made.values()))
        elif kind == "warn":
            warn(f"{shards[key].label()}: {value}")
        elif kind == "done":
            done[key] = value
        elif kind == "error":
            failed[key] = value
        elif kind == "stopped":
            stopped[0] = stopped[0] or value

    (runner or _run_local)(job, shards, todo, cfgs, on_event, stop)
    for s in todo:
        if s.index not in done and s.index not in failed and not stopped[0]:
            failed[s.index] = "the worker died without a word (killed, or out of memory)"
    if stopped[0] or (stop is not None and stop.is_set()):
        code = stopped[0] or (stop.exit_code if stop is not None else 130)
        raise Interrupted(code, f"interrupted; the same command with --resume continues {out.name}")
    if failed:
        k = min(failed)
        raise RifeError(
            f"{shards[k].label()} failed: {failed[k]}; the other shards' "
            f"segments are kept: the same command with --resume finishes {out.name}"
        )
    made_frames = frames_out(out, shards)
    audio = finish_video(
        segment_files(out, shards), job.inp, info, out, opts.slowmo, info.start, warn,
        job.target.write_rate, _restarts(shards, out),
    )  # fmt: skip
    shutil.rmtree(work_dir_for(out), ignore_errors=True)
    parts = [Summary(**done[s.index]) for s in todo]
    first = parts[0] if parts else Summary(input=str(inp), output=str(out))
    fields = 2 if info.interlace else 1  # an interlaced source's frames, not its fields
    return Summary(
        input=str(job.inp),
        output=str(out),
        frames_in=(info.frames // fields if info.frames else sum(p.frames_in for p in parts)),
        frames_out=made_frames,
        fps_in=first.fps_in,
        fps_out=first.fps_out,
        duration=float(Fraction(made_frames) / job.target.write_rate),
        scene_cuts=sum(p.scene_cuts for p in parts),
        seconds=round(time.perf_counter() - started, 3),
        device=getattr(runner, "label", None) or ",".join(dict.fromkeys(devices)),
        model=first.model,
        precision=first.precision,
        audio=audio,
        bad_packets=sum(p.bad_packets for p in parts),
        resized_frames=sum(p.resized_frames for p in parts),
        fp32_fallbacks=sum(p.fp32_fallbacks for p in parts),
        hwaccel=first.hwaccel,
        deinterlaced=info.interlace.describe(info.rate / 2) if info.interlace else "",
    )


def _run_local(job, shards, todo, cfgs, on_event, stop) -> None:
    """The shards in worker processes, at most one per device at a time (a resumed plan may have
    more shards than there are devices now)."""
    procs = _Processes()
    waiting = list(todo)
    free = list(cfgs)
    running: dict[int, WorkerConfig] = {}

    def start_next() -> None:
        while waiting and free and not (stop is not None and stop.is_set()):
            s, cfg = waiting.pop(0), free.pop(0)
            running[s.index] = cfg
            procs.start(
                s.index, cfg.device, shard_worker, cfg, str(job.inp), str(job.out), s,
                procs.events,
            )  # fmt: skip

    try:
        start_next()
        for kind, key, value in procs.events_until_done(stop, more=lambda: bool(waiting)):
            if kind == "exit":
                free.append(running.pop(key))
                start_next()
            else:
                on_event(kind, key, value)
    finally:
        procs.close()


def interpolate_files(
    jobs: list[Path],
    output_dir: Path | None,
    devices: list[str],
    engine: dict,
    options: dict,
    warn: Callable[[str], None],
    stop: StopRequest | None = None,
    on_done: Callable[[Path, Summary | None, str | None], None] | None = None,
) -> None:
    """Several inputs, whole, over the devices: each worker takes the next file when free.
    `on_done(input, summary, error)` is called as each one ends."""
    procs = _Processes()
    files = procs.ctx.Queue()
    for j in jobs:
        files.put(str(j))
    threads = _cores_per_worker(devices)
    for _ in devices:
        files.put(None)
    ended: set[str] = set()
    try:
        for wid, device in enumerate(devices):
            cfg = WorkerConfig(device, engine, options, threads)
            out_dir = None if output_dir is None else str(output_dir)
            procs.start(wid, device, file_worker, cfg, files, procs.events, out_dir)
        for kind, key, value in procs.events_until_done(stop):
            if kind == "exit":
                continue
            if kind == "warn":
                warn(f"{Path(key).name}: {value}")
            elif kind in ("done", "error", "stopped"):
                ended.add(key)
                if on_done is None:
                    continue
                if kind == "done":
                    on_done(Path(key), Summary(**value), None)
                elif kind == "error":
                    on_done(Path(key), None, value)
        if stop is not None and stop.is_set():
            raise Interrupted(stop.exit_code, "interrupted; rerun with --skip-existing to go on")
        for j in jobs:
            if str(j) not in ended and on_done is not None:
                on_done(j, None, "its worker died (killed, or out of memory)")
    finally:
        procs.close()
