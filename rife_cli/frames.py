"""`rife frames`: frames between two image files, written as a numbered sequence."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError, UsageError
from .pipeline.timing import check_exp, check_multi, one_of
from .video.images import blend_alpha, merge, read_image, split_alpha, write_image


def timesteps_for(
    exp: int | None, multi: int | None, ratio: float | None
) -> tuple[list[Fraction] | None, bool]:
    """The timesteps asked for, and whether they need a model that makes any timestep.

    For --ratio the list is None: the timestep depends on the model (v3.x bisects)."""
    one_of(exp=exp, multi=multi, ratio=ratio)
    if ratio is not None:
        if not 0 < ratio < 1:
            raise UsageError(f"--ratio {ratio} is outside (0, 1)")
        return None, False
    if multi is not None:
        check_multi(multi)
        ts = [Fraction(k, multi) for k in range(1, multi)]
        return ts, multi & (multi - 1) != 0
    exp = 1 if exp is None else exp
    check_exp(exp)
    n = 1 << exp
    return [Fraction(k, n) for k in range(1, n)], False


def _check_pair(p0: Path, im0: np.ndarray, p1: Path, im1: np.ndarray) -> None:
    if im0.shape[:2] != im1.shape[:2]:
        raise InputError(
            f"{p1}: size {im1.shape[1]}x{im1.shape[0]} differs from {p0} ({im0.shape[1]}x{im0.shape[0]})"
        )
    if im0.ndim != im1.ndim or im0.shape[2:] != im1.shape[2:]:
        raise InputError(f"{p1}: channel layout differs from {p0} (gray / colour / alpha)")
    if im0.dtype != im1.dtype:
        raise InputError(f"{p1}: sample type {im1.dtype} differs from {p0} ({im0.dtype})")


def make_frames(
    p0: Path,
    p1: Path,
    out_dir: Path,
    ts: list[Fraction] | None,
    ratio: float | None,
    build: Callable[[bool], object],
    need_any_timestep: bool,
    force: bool = False,
) -> list[Path]:
    """IMG0, the frames at `ts` (or at `ratio`) and IMG1 as out_dir/000.png, ... Files already
    there under those names are replaced only with `force`."""
    im0, im1 = read_image(p0), read_image(p1)
    _check_pair(p0, im0, p1, im1)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir}: exists and is not a directory")
    paths = _output_paths(out_dir, p0, 2 + (len(ts) if ts is not None else 1))
    inputs = {p0.resolve(), p1.resolve()}
    if any(p.resolve() in inputs for p in paths):
        raise UsageError(
            f"-o {out_dir}: the frames would overwrite an input; choose another folder"
        )
    # Before the model loads, and making nothing (a run that fails leaves no folder behind): a
    # folder that cannot be made or written is said at once.
    there = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not there.is_dir():
        raise OutputError(f"-o {out_dir}: cannot make it ({there} is not a directory)")
    if not os.access(there, os.W_OK):
        raise OutputError(f"-o {out_dir}: {there} is not writable")
    if not force:
        taken = next((p for p in paths if p.exists() or p.is_symlink()), None)
        if taken is not None:
            raise OutputError(f"{taken}: exists; use --force to overwrite")
    engine = build(need_any_timestep)
    if ts is None:
        ts = [engine.timestep_for_ratio(ratio)]

    gray = im0.ndim == 2
    c0, a0 = split_alpha(im0)
    c1, a1 = split_alpha(im1)
    frames = [im0]
    try:
        made = engine.interpolate(c0, c1, ts)
    finally:
        if hasattr(engine, "close"):
            engine.close()
    for t, color in zip(ts, made):
        alpha = blend_alpha(a0, a1, float(t)) if a0 is not None else None
        frames.append(merge(color, alpha, gray))
    frames.append(im1)

    out_dir.mkdir(parents=True, exist_ok=True)
    ends = {0: p0, len(paths) - 1: p1}
    for k, (path, frame) in enumerate(zip(paths, frames, strict=True)):
        given = ends.get(k)
        if given is not None and given.suffix.lower() == path.suffix:
            # the input itself: a JPEG decoded and encoded again loses a generation (31 dB)
            shutil.copyfile(given, path)
        else:
            write_image(path, frame)
    return paths


def _output_paths(out_dir: Path, p0: Path, n: int) -> list[Path]:
    """000.png, 001.png, ... (at least three digits), in IMG0's format."""
    ext = p0.suffix.lower() if p0.suffix else ".png"
    width = max(3, len(str(n - 1)))
    return [out_dir / f"{i:0{width}d}{ext}" for i in range(n)]
