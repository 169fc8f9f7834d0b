"""The `rife` command line: parsing, validation, progress and exit codes. Heavy imports are lazy."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path

import click

from .engine import hostmem
from .errors import RifeError

log = logging.getLogger("rife")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def debug() -> bool:
    return os.environ.get("RIFE_DEBUG", "") not in ("", "0")


def notice(msg: str) -> None:
    """A line on stderr; above the progress bar while one is drawn (not glued to its end)."""
    bar = _Progress.drawn
    if bar is not None:
        bar.write(f"rife: {msg}", file=sys.stderr)
    else:
        click.echo(f"rife: {msg}", err=True)


def fail(msg: str, code: int = EXIT_FAILED):
    click.echo(f"rife: error: {msg}", err=True)
    sys.exit(code)


def quit_now(msg: str, code: int):
    """Exit at once (a second Ctrl-C): not through Python's exit, which would first wait for the
    threads still at work (a batch being made, lanes) to finish it."""
    if debug():
        import traceback

        traceback.print_exc()
    click.echo(f"rife: error: {msg}", err=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def show_traceback() -> None:
    """With RIFE_DEBUG=1, the traceback of the error being handled, before its one line: the
    exit code stays the one the README gives (scripts that debug still branch on it)."""
    if debug():
        import traceback

        traceback.print_exc()


def reported(fn):
    """Turn the tool's errors into one line and an exit code; RIFE_DEBUG=1 shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # Click prints these itself (usage errors: exit 2)
        except RifeError as exc:
            if getattr(exc, "hard", False):
                quit_now(str(exc), exc.exit_code)
            show_traceback()
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            show_traceback()
            fail("interrupted", EXIT_SIGINT)
        except MemoryError:
            show_traceback()
            fail("out of memory; try --scale 0.5 or a smaller --batch-size")
        except Exception as exc:  # noqa: BLE001 - any other error: one line, never a traceback
            show_traceback()
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if "out of memory" in msg.lower():
                fail("out of GPU memory; try --scale 0.5 or a smaller --batch-size")
            fail(f"unexpected {type(exc).__name__}: {msg[:200]} (RIFE_DEBUG=1 shows the traceback)")

    return wrapper


def model_options(fn):
    """--model, --scale/--uhd, --device, --precision, --offline: shared by every command that infers."""
    opts = [
        click.option(
            "--model",
            "-m",
            default=None,
            metavar="NAME|DIR|FILE",
            help="Model name (v3.6, v3.8, v4.0 ... v4.26.heavy: rife models), a train_log "
            "directory holding flownet.pkl, or a weights file (any 4.x: the version is recognised). "
            "Default: $RIFE_MODEL, else ./train_log/flownet.pkl, else v3.6.",
        ),
        click.option(
            "--model-version",
            default=None,
            metavar="V",
            help="The version a weights file is, where its tensors fit several (e.g. 4.0 or 4.1).",
        ),
        click.option(
            "--ensemble",
            is_flag=True,
            help="4.0-4.20: also run each block on the reversed pair and average (slower).",
        ),
        click.option(
            "--scale",
            type=click.Choice(["0.25", "0.5", "1", "2", "4"]),
            default=None,
            help="Flow scale: 0.5 for 4K, 0.25 for 8K, 2 or 4 for small frames. [default: 1]",
        ),
        click.option("--uhd", is_flag=True, help="Same as --scale 0.5 (for 4K input)."),
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
            default="auto",
            show_default=True,
            help="auto: fp16 on CUDA, bf16 on CPUs with AMX/AVX-512 bf16, else fp32.",
        ),
        click.option(
            "--offline", is_flag=True, help="Never download weights (also RIFE_OFFLINE=1)."
        ),
        click.option(
            "--compile",
            "compile_net",
            is_flag=True,
            help="torch.compile the network: a slow first frame (up to a minute on a small CPU); "
            "on the CPU slower than the default path, meant for GPUs.",
        ),
        click.option(
            "--cuda-graphs",
            is_flag=True,
            help="On CUDA, also capture the compiled network as CUDA graphs (implies --compile; "
            "one batch at a time; not yet measured on a GPU).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def flow_scale(scale: str | None, uhd: bool) -> float:
    if uhd and scale not in (None, "0.5"):
        raise click.UsageError("--uhd means --scale 0.5; give one or the other")
    return 0.5 if uhd else float(scale or 1)


def engine_options(
    model,
    scale,
    uhd,
    device,
    precision,
    offline,
    compile_net=False,
    batch_size=0,
    model_version=None,
    ensemble=False,
    cuda_graphs=False,
) -> dict:
    """The model options of the command line as the Interpolator's keyword arguments."""
    return {
        "model": model,
        "device": device,
        "precision": precision,
        "scale": flow_scale(scale, uhd),
        "batch_size": batch_size,
        "offline": offline,
        "compile": compile_net,
        "model_version": model_version,
        "ensemble": ensemble,
        "cuda_graphs": cuda_graphs,
    }


def build_interpolator(need_any_timestep=False, **model_opts):
    from .engine import interpolator_for

    return interpolator_for(need_any_timestep, notice=notice, **engine_options(**model_opts))


class RifeGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors as one line (exit 2), like every other error; our own go through `reported`."""
        logging.basicConfig(format="rife: %(message)s", level=logging.INFO)
        # PyTorch logs its own statistics at INFO on the way out ("FakeTensor cache stats", after
        # a Ctrl-C while it loads): ours only, at INFO
        logging.getLogger("torch").setLevel(logging.WARNING)
        # Before any thread exists (encoder checks start some): see rife_cli.engine.hostmem. A CPU
        # tuning: a CUDA run keeps the C library's allocator as it is.
        if cpu_run_expected(sys.argv[1:] if args is None else list(args)):
            hostmem.keep_freed_memory()
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = (
                # "rife models fetch", not "rife fetch" (and "rife" whatever the program name)
                f" (rife {' '.join(exc.ctx.command_path.split()[1:])} --help)"
                if exc.ctx and exc.ctx.parent
                else " (rife --help)"
            )
            click.echo(f"rife: error: {exc.format_message()}{where}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            fail("aborted", EXIT_SIGINT)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


@click.group(cls=RifeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rife-cli", prog_name="rife")
def main():
    """Video frame interpolation with RIFE: more frames per second, or frames between two images."""


@main.command()
@click.argument("img0", type=click.Path(path_type=Path))
@click.argument("img1", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("output"),
    show_default=True,
    help="Directory for the frames.",
)
@click.option(
    "--exp", type=int, default=None, help="Make 2^N - 1 frames between (default 1: one midpoint)."
)
@click.option("--multi", type=int, default=None, help="Make M - 1 evenly spaced frames between.")
@click.option("--ratio", type=float, default=None, help="Make one frame at time T in (0, 1).")
@click.option("--force", is_flag=True, help="Overwrite files already in the output directory.")
@model_options
@reported
def frames(img0, img1, output, exp, multi, ratio, force, **model_opts):
    """Make frames between two images IMG0 and IMG1.

    Writes IMG0, the made frames and IMG1 into the output directory as 000.png, 001.png, ...
    (the input's format: PNG 8/16-bit, JPEG, TIFF, EXR float). An alpha channel is carried
    through, blended linearly with the same t as the colour; grayscale stays grayscale. A file
    already there under one of those names is an error unless --force is given.

    \b
    Examples:
      rife frames a.png b.png                  # 3 files: a, middle, b
      rife frames a.png b.png --exp 2 -o out   # 5 files
      rife frames a.png b.png --model v4.0 --ratio 0.3
    """
    from .frames import make_frames, timesteps_for

    ts, need_any = timesteps_for(exp, multi, ratio)
    written = make_frames(
        img0,
        img1,
        output,
        ts,
        ratio,
        lambda need: build_interpolator(**model_opts, need_any_timestep=need),
        need_any,
        force,
    )
    notice(f"wrote {len(written)} frames to {output}")


class _Progress:
    """A tqdm bar on stderr fed by the pipeline's callback; silent with --quiet."""

    drawn = None  # the bar on screen now, which notices go above

    def __init__(self, quiet: bool, name: str):
        self.quiet, self.name, self.bar = quiet, name, None

    def total(self, n):
        if not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=n,
                desc=self.name,
                unit="frame",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
            _Progress.drawn = self.bar

    def __call__(self, done: int):
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            if _Progress.drawn is self.bar:
                _Progress.drawn = None
            self.bar.close()


def _install_stop_handlers():
    """First SIGINT/SIGTERM: finish the current pair, close the segment, exit 130/143.
    A second one stops at once."""
    from .pipeline.run import install_stop_handlers

    return install_stop_handlers(notice)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(),  # a string: its trailing / says "a folder of PNG frames"
    default=None,
    help="Output file (.mp4 .mkv .mov .webm) or, with --png or a trailing /, a directory; - for "
    "standard output (see --format). Default: beside the input, {stem}_{factor}x_{fps}fps.{ext}. "
    "With several inputs: a directory.",
)
@click.option(
    "--format",
    "pipe_format",
    type=click.Choice(["matroska", "nut", "mpegts", "yuv4mpegpipe"]),
    default=None,
    help="With -o -: the stream's format (default matroska; yuv4mpegpipe: raw frames for another "
    "encoder, no audio).",
)
@click.option(
    "--exp", type=int, default=None, help="Multiply the frame rate by 2^N (default 1: 2x)."
)
@click.option("--multi", type=int, default=None, help="Multiply the frame rate by M (3 uses v4.0).")
@click.option("--fps", default=None, metavar="F", help="Target rate: 60, 59.94, 60000/1001.")
@click.option(
    "--input-fps",
    default=None,
    metavar="RATE",
    help="Rate of an image folder (default 25): 24, 23.976 (= 24000/1001), 30000/1001. "
    "Not for videos, whose rate comes from the file.",
)
@click.option(
    "--slowmo", is_flag=True, help="Write at the source rate: slow motion (audio is dropped)."
)
@click.option(
    "--scene-threshold",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Pairs less similar than this (SSIM of thumbnails, motion undone) may be cuts: nothing "
    "blended across; one-frame flashes are not blended either, fades are. 0: off.",
)
@click.option(
    "--dedup",
    is_flag=True,
    help="Drop repeated frames (animation on twos/threes) and interpolate the distinct ones on "
    "their real timeline (uses v4.0).",
)
@click.option(
    "--dedup-threshold",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="A frame repeats the last one kept when no 16x16 block of their luma differs by more "
    "than this on average (8-bit levels).",
)
@click.option(
    "--dedup-max-hold",
    type=click.IntRange(min=1),
    default=None,
    help="Frames a drawing may be held and still be deduplicated; longer holds stay pauses "
    "(default: 1/6 s, 4 frames at 24 fps).",
)
@click.option("--montage", is_flag=True, help="Left half original (held), right half interpolated.")
@click.option(
    "--png", is_flag=True, help="Write a numbered PNG sequence (16-bit for >8-bit sources)."
)
@click.option(
    "--force", is_flag=True, help="Overwrite an existing output (and start over a --resume)."
)
@click.option(
    "--skip-existing", is_flag=True, help="Skip inputs whose output is already there (complete)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its last finished segment instead of from zero.",
)
@click.option(
    "--codec",
    default=None,
    help="libx264 (default; libsvtav1 for .webm, libx265 for HDR sources), libx265, libsvtav1, "
    "ffv1, prores_ks, libvpx-vp9, h264_nvenc, hevc_nvenc, av1_nvenc.",
)
@click.option(
    "--crf",
    type=click.IntRange(min=0),
    default=None,
    help="Encoder quality, lower is better (x264/x265 0-51, default 23/28; SVT-AV1/VP9 0-63).",
)
@click.option("--preset", default=None, help="Encoder preset (x264 default here: fast).")
@click.option(
    "--pix-fmt",
    default=None,
    help="Output pixel format (default: the source's chroma format and depth where the encoder "
    "holds them, else the nearest it holds, said in a notice).",
)
@click.option(
    "--batch-size", type=int, default=0, help="Pairs per forward (default: from free memory)."
)
@click.option(
    "--hwaccel",
    type=click.Choice(["none", "cuda"]),
    default="none",
    show_default=True,
    help="Decode the video on the GPU (cuda: NVDEC); codecs it lacks decode on the CPU.",
)
@click.option(
    "--deinterlace",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Interlaced sources to one frame per field before interpolating (bwdif): auto when the "
    "stream or its frames say interlaced (FFmpeg's idet alone only warns). 25i --exp 1 gives "
    "50p, every frame a field.",
)
@click.option(
    "--devices",
    default=None,
    metavar="LIST",
    help="Several devices at once: cuda:0,cuda:1, all (every GPU) or cpu,cpu. One input is cut "
    "into a shard per device and joined; several inputs are spread over them, whole.",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS",
    help="Run the shards as Ray tasks on a cluster (auto, or host:port); inputs and outputs on a "
    "path every node sees. Needs pip install 'rife-cli[ray]'.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@model_options
@reported
def interpolate(inputs, output, pipe_format, exp, multi, fps, input_fps, slowmo, scene_threshold,
                dedup, dedup_threshold, dedup_max_hold, montage, png, force, skip_existing, resume,
                codec, crf, preset, pix_fmt, batch_size, hwaccel, deinterlace, devices,
                ray_address, quiet, as_json, **model_opts):  # fmt: skip
    """Interpolate videos (any file FFmpeg reads) or image directories to a higher frame rate.

    Output frame i sits at i / F_out; source frames pass through untouched, made frames fill the
    gaps, the last source frame is held so the output lasts as long as the input, and audio,
    subtitles and chapters are copied.

    \b
    Examples:
      rife interpolate --exp 2 input.mp4          # 4x, input_4x_100fps.mp4 beside it
      rife interpolate --fps 60 clip.mkv -o out.mkv
      rife interpolate frames_dir/ -o out/ --png
      rife interpolate frames_dir/ --input-fps 23.976 -o out.mkv
      ffmpeg -i in.mkv -f matroska - | rife interpolate - -o - > out.mkv
      rife interpolate in.mp4 -o - --format yuv4mpegpipe | x265 --y4m - -o out.hevc
    """
    options = {
        "resume": resume, "skip_existing": skip_existing, "exp": exp, "multi": multi, "fps": fps,
        "input_fps": input_fps, "slowmo": slowmo, "scene_threshold": scene_threshold,
        "dedup": dedup, "dedup_threshold": dedup_threshold, "dedup_max_hold": dedup_max_hold,
        "montage": montage, "png": png, "force": force, "codec": codec, "crf": crf,
        "preset": preset, "pix_fmt": pix_fmt, "hwaccel": None if hwaccel == "none" else hwaccel,
        "format": pipe_format, "deinterlace": deinterlace,
    }  # fmt: skip
    folder = output is not None and output != "-" and output.endswith(("/", os.sep))
    output = None if output is None else ("-" if output == "-" else Path(output))
    jobs = _checked_jobs(inputs, output, options, batch_size, devices, ray_address, as_json)
    # A batch: several inputs, or one that a folder of videos or a glob stood for (its output
    # goes into -o DIR/ by its own name, as it would with more).
    from .batch import stands_for_several
    from .video.pipes import is_stream

    several = len(inputs) > 1 or any(
        stands_for_several(Path(i)) for i in inputs if not is_stream(i)
    )
    if folder and not several:
        options["png"] = True  # -o DIR/ for one input: its frames as PNG files there
    if jobs and devices is None and ray_address is None:
        _prefault_for_cpu_run(jobs[0], model_opts["device"])
    stop = _install_stop_handlers()
    out_dir = output if several else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    done = None
    if devices is not None or ray_address is not None:
        done = _scale_out(jobs, output, out_dir, devices, ray_address, model_opts, batch_size,
                          options, quiet, stop)  # fmt: skip
    engine_for = _engines(model_opts, batch_size)
    rows, results, failed = [], [], 0
    claimed: dict = {}  # output -> the input that writes it, so that no two share one
    for inp in jobs:
        summary = _one_input(inp, None if several else output, out_dir, done, engine_for,
                             {**options, "claimed": claimed}, quiet, stop, several, rows)  # fmt: skip
        if summary is None:
            failed += 1
            continue
        results.append(summary)
        _report(inp, summary, rows, quiet, dedup, input_fps, several)
    _finish(jobs, rows, results, failed, several, as_json)


def _checked_jobs(inputs, output, options, batch_size, devices, ray_address, as_json) -> list:
    """The inputs as jobs (files, folders, globs expanded; "-" and URLs as given), and every usage
    error found before any input is opened."""
    from .batch import expand_inputs
    from .pipeline.run import input_rate
    from .pipeline.timing import Timing
    from .video.pipes import is_stdio, is_stream

    Timing.from_options(options["exp"], options["multi"], options["fps"], options["slowmo"])
    if options["force"] and options["skip_existing"]:
        raise click.UsageError("--force overwrites what --skip-existing leaves: give one of them")
    if batch_size < 0:
        raise click.UsageError("--batch-size must be 1 or more")
    if options["format"] is not None and not is_stdio(output):
        raise click.UsageError("--format is for -o - (standard output); a file's suffix says it")
    streams = [i for i in inputs if is_stream(i)]
    jobs = streams + expand_inputs([Path(i) for i in inputs if not is_stream(i)])
    piped = is_stdio(output) or any(is_stdio(i) for i in inputs)
    if piped and (devices is not None or ray_address is not None):
        raise click.UsageError("--devices and --ray cut a file into shards; pipes cannot be cut")
    if is_stdio(output) and len(jobs) > 1:
        raise click.UsageError("-o - takes one input")
    if is_stdio(output) and as_json:
        raise click.UsageError("--json prints on standard output, which -o - uses for the video")
    if sum(is_stdio(i) for i in inputs) > 1 or (any(map(is_stdio, inputs)) and len(jobs) > 1):
        raise click.UsageError("standard input (-) is one input, alone")
    if options["input_fps"] is not None:
        for inp in jobs:  # a video among the inputs: refused before any work
            if is_stream(inp):
                raise click.UsageError("--input-fps sets the rate of an image folder")
            input_rate(options["input_fps"], inp)
    # the same input given twice is made once (its second run found its first output there)
    unique: dict = {}
    for job in jobs:
        unique.setdefault(job.resolve() if isinstance(job, Path) else job, job)
    if len(unique) < len(jobs):
        twice = [str(j) for j in unique.values() if sum(str(j) == str(k) for k in jobs) > 1]
        notice(f"{', '.join(twice) or 'an input'}: given more than once; interpolated once")
        jobs = list(unique.values())
    if len(jobs) > 1 and output is not None and output.exists() and not output.is_dir():
        raise click.UsageError("with several inputs, -o must be a directory")
    if len(jobs) > 1 and isinstance(output, Path) and not output.exists():
        from .video.sink import CONTAINERS

        if output.suffix.lower() in CONTAINERS:
            raise click.UsageError(
                f"with several inputs, -o must be a directory, not a {output.suffix} file "
                f"(-o {output.parent / output.stem}/)"
            )
    return jobs


def _engines(model_opts: dict, batch_size: int):
    """The engine for a run, made on first use and kept for the next inputs."""
    engines: dict[bool, object] = {}

    def engine_for(need):
        if need not in engines:
            engines[need] = build_interpolator(
                **model_opts, need_any_timestep=need, batch_size=batch_size
            )
        return engines[need]

    return engine_for


def _one_input(inp, output, out_dir, done, engine_for, options, quiet, stop, several, rows):
    """One input's summary (from the scale-out run, or made here); None when it failed and
    others follow (the failure is in `rows`)."""
    from .errors import Interrupted
    from .pipeline.run import interpolate_video
    from .video.pipes import label

    bar = _Progress(quiet or done is not None, Path(str(inp)).name or label(inp))
    try:
        if done is not None:
            summary, error = done[inp]
            if error is not None:
                raise RifeError(error)
            return summary
        return interpolate_video(inp, output, output_dir=out_dir, engine_factory=engine_for,
                                 progress=bar, total=bar.total, warn=notice, stop=stop,
                                 **options)  # fmt: skip
    except Interrupted:
        raise
    except Exception as exc:
        if not several:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notice(f"error: {msg}")
        rows.append((str(inp), "failed", msg))
        return None
    finally:
        bar.close()


def _report(inp, summary, rows: list, quiet: bool, dedup: bool, input_fps, several: bool) -> None:
    """One input's row for the table of several, its warnings and its summary line (stderr)."""
    if summary.skipped:
        rows.append((str(inp), "skipped", f"{summary.output} exists"))
        if not several:  # a batch says it in its table
            notice(f"{inp}: skipped: {summary.output} exists (finished)")
        return
    rows.append(
        (
            str(inp),
            "done",
            f"{summary.frames_out} frames, {summary.seconds:.1f} s -> {summary.output}",
        )
    )
    if summary.bad_packets:
        notice(f"{inp}: {summary.bad_packets} corrupt packets skipped")
    if summary.resized_frames:
        notice(f"{inp}: {summary.resized_frames} frames of another size scaled to fit")
    if summary.oom_backoffs:
        notice(
            f"{inp}: out of GPU memory {summary.oom_backoffs} time(s); the batch was halved "
            "each time (a smaller --batch-size avoids the retries)"
        )
    if quiet:
        return
    rate_note = ""
    if isinstance(inp, Path) and inp.is_dir() and input_fps is None:
        rate_note = " (an image folder's default rate; --input-fps sets it)"
    notice(
        f"{summary.input} -> {summary.output}: {summary.frames_in} -> {summary.frames_out} frames, "
        f"{summary.fps_in} -> {summary.fps_out} fps{rate_note}, {summary.duration:.3f} s, "
        f"{summary.scene_cuts} scene cuts, "
        + (f"{summary.duplicates} duplicates dropped, " if dedup else "")
        + (f"{summary.flashes} flashes, " if summary.flashes else "")
        + (f"deinterlaced ({summary.deinterlaced}), " if summary.deinterlaced else "")
        + f"{summary.seconds:.1f} s on {summary.device} ({summary.model}, {summary.precision})"
    )


def _finish(jobs, rows, results, failed: int, several: bool, as_json: bool) -> None:
    """The table of several inputs, the JSON summary, and the exit code when some failed."""
    import json

    from .batch import summary_table

    if several:
        click.echo(summary_table(rows), err=True)
    if as_json:
        payload = [r.as_dict() for r in results]
        click.echo(json.dumps(payload[0] if not several and payload else payload))
    if failed:
        notice(f"{failed} of {len(jobs)} inputs failed")
        sys.exit(EXIT_SOME_FAILED if results else EXIT_FAILED)


def _scale_out(jobs, output, out_dir, devices, ray_address, model_opts, batch_size, options, quiet,
               stop) -> dict:  # fmt: skip
    """--devices / --ray: every input's (summary, error), made by worker processes or Ray."""
    from .scale.devices import interpolate_files, interpolate_sharded, parse_devices

    if model_opts["device"] != "auto":
        raise click.UsageError("--device names one device; with --devices name them all there")
    engine = engine_options(**model_opts, batch_size=batch_size)
    del engine["device"]  # each worker's own
    results: dict = {}
    if ray_address is not None:
        from .scale.ray_cluster import ray_runner

        runner, devs = ray_runner(ray_address, devices, notice)
    else:
        runner, devs = None, parse_devices(devices)
    if len(jobs) == 1:
        bar = _Progress(quiet, jobs[0].name)
        try:
            results[jobs[0]] = (
                interpolate_sharded(
                    jobs[0], output, devs, engine, options, bar, bar.total, notice, stop, runner
                ),
                None,
            )
        finally:
            bar.close()
        return results
    if runner is not None:
        raise click.UsageError("--ray takes one input at a time (it cuts it into shards)")

    def on_done(inp, summary, error):
        results[inp] = (summary, error)
        if not quiet:
            notice(f"{inp.name}: {'done' if error is None else 'failed: ' + error}")

    interpolate_files(jobs, out_dir, devs, engine, options, notice, stop, on_done)
    return results


def nvidia_present() -> bool:
    """An NVIDIA driver's device nodes are there (without importing PyTorch)."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0"))


def cpu_run_expected(args: list[str]) -> bool:
    """Whether a command line will run the network on the CPU, told before PyTorch is imported:
    --device cpu, or --device auto (the default) on a machine without an NVIDIA driver."""
    device = "auto"
    for i, arg in enumerate(args):
        if arg == "--device" and i + 1 < len(args):
            device = args[i + 1]
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
    if device == "cpu":
        return True
    return device == "auto" and not nvidia_present()


def _prefault_for_cpu_run(first: Path, device: str) -> None:
    """At a cold start on the CPU, fault in the memory the first batch will need while PyTorch is
    imported on one core and the others idle (rife_cli.engine.hostmem.prefault). Measured on the 2-core
    CPU, whole `rife interpolate --exp 1` of a 20-frame 720p clip, alternated 3 times: 23.2-23.9 s
    against 24.1-24.8 s without (and no gain from faulting half as much again)."""
    if "torch" in sys.modules or device not in ("auto", "cpu") or not isinstance(first, Path):
        return  # (a pipe or a URL is read once, by the run)
    if device == "auto" and nvidia_present():
        return  # a CUDA machine: the frames will not be on the host
    from .engine.cpus import default_lanes
    from .video.source import probe

    try:
        info = probe(first)
    except RifeError:
        return  # the run itself says what is wrong with it
    hostmem.prefault(hostmem.first_pass_bytes(info.width, info.height, default_lanes()))


@main.command()
@click.option(
    "--size",
    "sizes",
    multiple=True,
    default=["1280x720"],
    show_default=True,
    help="Frame size WxH (repeatable).",
)
@click.option(
    "--batch-size", type=int, default=0, help="Pairs per forward (default: from free memory)."
)
@click.option(
    "--frames", type=int, default=6, show_default=True, help="Frames in the generated clip."
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Alternating rounds; medians reported.",
)
@click.option(
    "--pad-channels",
    type=click.IntRange(0, 64),
    default=0,
    help="Zero-pad v3.x inner channels (90/45) to a multiple of N, e.g. 8 for GPU tensor cores.",
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option(
    "--pipeline",
    "pipeline_input",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="INPUT",
    help="Measure the host's ceiling instead: interpolate's whole pipeline on INPUT with a "
    "network that costs nothing, and a bare PyAV decode + encode of the same frames. With "
    "--device cuda[:N], the device's colour conversions and transfers are in it too.",
)
@click.option("--exp", type=int, default=None, help="--pipeline: as interpolate's (default 1).")
@click.option("--multi", type=int, default=None, help="--pipeline: as interpolate's.")
@click.option("--fps", default=None, metavar="F", help="--pipeline: as interpolate's.")
@click.option("--codec", default=None, help="--pipeline: as interpolate's.")
@click.option("--crf", type=int, default=None, help="--pipeline: as interpolate's.")
@click.option("--preset", default=None, help="--pipeline: as interpolate's.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="--pipeline: keep the video here (default: a temporary file, removed).",
)
@model_options
@reported
def bench(
    sizes,
    batch_size,
    frames,
    rounds,
    pad_channels,
    as_json,
    pipeline_input,
    exp,
    multi,
    fps,
    codec,
    crf,
    preset,
    output,
    **model_opts,
):
    """Measure model-only pairs/s and end-to-end fps against a reference-like fp32 baseline.

    The baseline (fp32, NCHW, one pair per forward, decode/infer/encode in one loop) runs in a
    process of its own, alternated with ours; the ratio is what to quote. With --pipeline INPUT,
    what this host can feed a GPU instead (see rife_cli.pipeline.ceiling).
    """
    import json

    if pipeline_input is not None:
        from .pipeline.ceiling import pipeline_bench, render

        r = pipeline_bench(
            pipeline_input,
            exp=exp,
            multi=multi,
            fps=fps,
            codec=codec,
            preset=preset,
            crf=crf,
            output=output,
            log=notice,
            # The host side alone unless a CUDA device is named: then its real conversions too.
            device=model_opts["device"] if model_opts["device"].startswith("cuda") else None,
        )
        click.echo(json.dumps(r) if as_json else render(r))
        return

    from .bench import machine, run_bench

    if frames < 2:
        raise click.UsageError("--frames must be 2 or more")
    results = []
    for size in sizes:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise click.UsageError(f"--size {size!r}: use WxH, e.g. 1920x1080") from None
        r = run_bench(
            model_opts["model"],
            (w, h),
            model_opts["precision"],
            batch_size,
            model_opts["compile_net"],
            model_opts["device"],
            frames,
            rounds=rounds,
            scale=flow_scale(model_opts["scale"], model_opts["uhd"]),
            offline=model_opts["offline"],
            pad_channels=pad_channels,
            log=lambda m: notice(m) if not as_json else None,
            cuda_graphs=model_opts["cuda_graphs"],
        )
        results.append(r)
    if as_json:
        click.echo(
            json.dumps({"machine": machine(), "results": [r.as_dict() for r in results]}, indent=1)
        )
        return
    click.echo(f"machine: {machine()}")
    for r in results:
        click.echo(
            f"{r.size} {r.label} {r.device} {r.precision} batch {r.batch_size}"
            f"{' compiled' if r.compile else ''}: model {r.pairs_per_s:.3f} pairs/s "
            f"(baseline {r.baseline_pairs_per_s:.3f}, {r.model_ratio:.2f}x); end-to-end "
            f"{r.e2e_fps:.3f} fps (baseline {r.baseline_e2e_fps:.3f}, {r.e2e_ratio:.2f}x); "
            f"peak RSS {r.peak_rss_mib:.0f} MiB"
            + (f", peak GPU {r.peak_gpu_mib:.0f} MiB" if r.peak_gpu_mib is not None else "")
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--no-gpu-probe",
    is_flag=True,
    help="Do not try the NVIDIA decoder and encoders on the GPU (faster; 'built' only).",
)
@click.option(
    "--no-bench",
    is_flag=True,
    help="Skip the short pipeline bench (which side limits this box; a few seconds).",
)
@reported
def doctor(as_json, no_gpu_probe, no_bench):
    """What this machine offers: PyTorch, CUDA and GPUs, NVDEC/NVENC, CPU, models, disk; and the
    flags it suggests."""
    import json

    from .doctor import collect, render

    report = collect(try_gpu=not no_gpu_probe, bench=not no_bench)
    click.echo(json.dumps(report.as_dict(), indent=1) if as_json else render(report))


@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """List the named models (or fetch them: rife models fetch NAME...)."""
    if ctx.invoked_subcommand is not None:
        return
    from .models.cache import cached_path, recorded_sha256
    from .models.registry import DEFAULT_MODEL, MODELS

    click.echo(f"{'name':10}  {'family':6}  {'installed':9}  {'params':>6}  purpose / location")
    for m in MODELS.values():
        path = cached_path(m.name)
        here = path.is_file()
        default = " (default)" if m.name == DEFAULT_MODEL else ""
        click.echo(
            f"{m.name:10}  {m.family + '.x' if m.family == 'v3' else m.family:6}  "
            f"{'yes' if here else 'no':9}  {m.params / 1e6:5.1f}M  {m.purpose}{default}"
        )
        where = str(path) if here else f"fetch: rife models fetch {m.name}  ({m.url})"
        click.echo(f"{'':40}{where}")
        if m.file and here:
            sha = recorded_sha256(m.name)
            click.echo(f"{'':40}sha256 {sha or 'not recorded yet (recorded at first load)'}")


@models.command("fetch")
@click.argument("names", nargs=-1, required=True)
@reported
def models_fetch(names):
    """Download, verify (sha256) and cache named models."""
    from .models.cache import cached_path, fetch
    from .models.registry import MODELS

    names = [n if n in MODELS or f"v{n}" not in MODELS else f"v{n}" for n in names]
    for name in names:
        if name not in MODELS:
            raise click.BadParameter(
                f"unknown model {name!r}; known: {', '.join(MODELS)}", param_hint="NAMES"
            )
    for name in names:
        if cached_path(name).is_file():
            click.echo(f"{name}: already cached at {cached_path(name)}")
            continue
        path = fetch(name, notice)
        click.echo(f"{name}: {path}")


if __name__ == "__main__":
    main()
