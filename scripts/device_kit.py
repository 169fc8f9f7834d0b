#!/usr/bin/env python3
"""Assemble `.device/`, what scripts/device_check.sh needs on a bare GPU machine with no network.

    python scripts/device_kit.py [--out .device] [--av VERSION]

The kit holds the PyAV wheel for CPython 3.12 manylinux x86-64 and the v3.6 and v4.0 weights as
the loader keeps them (inference tensors only; the 4.x layouts' weights are made on the spot by
the golden rule). Both are LZMA-compressed, as the tracked tree plus the kit must stay within the
64 MiB that travels with a device call: the wheel is re-zipped with LZMA members (still a wheel
pip installs), the weights are .pkl.xz with their sha256 in manifest.json. Where this
interpreter cannot install the device's wheel, its own goes to `.device-host/` (never carried),
so that tests/test_device_check.py can run the kit here. Weights are fetched and verified by
rife_cli.models.cache.fetch (the user's cache, or $RIFE_HOME). Rebuilding is cheap: what is
already in the kit from the same sources is kept.

    python scripts/device_kit.py --unpack KIT HOME

(used by device_check.sh, standard library only) checks and writes the kit's weights into the
model cache folder HOME.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("v3.6", "v4.0")
DEVICE_PYTHON = "3.12"
# pip matches each manylinux tag exactly; the machine's glibc (Ubuntu 24.04's 2.39) takes any.
DEVICE_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
LIMIT = 64 * 2**20  # what travels with one device call: tracked tree, untracked files, carried
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _pip_download(requirement: str, dest: Path, device: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest)]
    if device:
        cmd += ["--python-version", DEVICE_PYTHON, "--implementation", "cp"]
        for p in DEVICE_PLATFORMS:
            cmd += ["--platform", p]
    proc = subprocess.run(cmd + [requirement], capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        sys.exit(f"device_kit: could not download {requirement}: {last}")
    return wheels[0]


def relzma_wheel(src: Path, dst: Path) -> None:
    """The same wheel (names, attributes, RECORD untouched) with LZMA members: about 25% smaller
    than deflate for PyAV's FFmpeg libraries. pip reads it with Python's zipfile."""
    part = dst.with_suffix(".part")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(part, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_LZMA  # after the read, which decodes by it
            zout.writestr(info, data)
    os.replace(part, dst)


def av_version(arg: str | None) -> str | None:
    """The PyAV the kit carries: --av, else the one installed here (what the tests ran with)."""
    if arg:
        return arg
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("av")
    except PackageNotFoundError:
        return None


def build_wheels(out: Path, host: Path, version: str | None, old: dict) -> dict:
    req = f"av=={version}" if version else "av"
    with tempfile.TemporaryDirectory(prefix="rife-kit-") as tmp:
        dev = _pip_download(req, Path(tmp) / "device", device=True)
        here = _pip_download(req, Path(tmp) / "host", device=False)
        dev_sha = sha256(dev)
        wheels = out / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        target = wheels / dev.name
        entry = old.get("wheels", {}).get(dev.name, {})
        if not (target.is_file() and entry.get("source_sha256") == dev_sha):
            for stale in wheels.glob("*.whl"):
                stale.unlink()
            print(f"device_kit: re-zipping {dev.name} ({mib(dev.stat().st_size)}) with LZMA")
            relzma_wheel(dev, target)
        shutil.rmtree(host, ignore_errors=True)
        if here.name != dev.name:
            (host / "wheels").mkdir(parents=True)
            shutil.copy2(here, host / "wheels" / here.name)
            print(f"device_kit: this interpreter takes {here.name}: kept in {host} (not carried)")
        return {dev.name: {"source_sha256": dev_sha, "sha256": sha256(target)}}


def build_models(out: Path, old: dict) -> dict:
    """Each named model fetched and verified by the tool's own cache code, reduced to the tensors
    the loader keeps, saved by torch and xz-compressed."""
    import io

    sys.path.insert(0, str(ROOT))
    import torch

    from rife_cli.models.cache import fetch
    from rife_cli.models.recognise import read_state_dict

    def one(name: str) -> tuple[str, dict]:
        src = fetch(name, notice=lambda m: print(f"device_kit: {m}"))
        src_sha = sha256(src)
        dest = out / "models" / name / "flownet.pkl.xz"
        entry = old.get("models", {}).get(name, {})
        if dest.is_file() and entry.get("source_sha256") == src_sha:
            return name, entry
        sd, dropped = read_state_dict(src)
        buf = io.BytesIO()
        torch.save(sd, buf)
        raw = buf.getvalue()
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_suffix(".part")
        part.write_bytes(lzma.compress(raw, preset=6))
        os.replace(part, dest)
        print(f"device_kit: {name}: {mib(len(raw))} of inference tensors (dropped {dropped})")
        return name, {
            "source_sha256": src_sha,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "bytes": len(raw),
        }

    with ThreadPoolExecutor(len(MODELS)) as pool:  # lzma lets go of the GIL: both cores work
        return dict(pool.map(one, MODELS))


def travelling_bytes(kit: Path) -> tuple[int, int]:
    """(tracked and untracked-not-ignored files of the tree, the kit): what a device call takes."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    tree = 0
    for name in proc.stdout.decode().split("\0"):
        p = ROOT / name
        if name and p.is_file() and not p.is_symlink():
            tree += p.stat().st_size
    kit_bytes = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    return tree, kit_bytes


def build(out: Path, version: str | None) -> int:
    out.mkdir(parents=True, exist_ok=True)  # git tells a folder by its existing
    if out.is_relative_to(ROOT):
        # Inside the tree the kit must be ignored by git: it travels as a carried folder, and
        # `git add -A` must never commit 50 MiB of wheels and weights.
        ignored = subprocess.run(["git", "check-ignore", "-q", str(out)], cwd=ROOT, check=False)
        if ignored.returncode != 0:
            print(f"device_kit: {out} is not ignored by git; add it to .gitignore", file=sys.stderr)
            return 1
    old = {}
    if (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text())
    out.mkdir(parents=True, exist_ok=True)
    host = out.with_name(out.name + "-host")
    # The wheel's re-zip (one core) runs beside the weights' compression (the other).
    with ThreadPoolExecutor(1) as pool:
        wheels = pool.submit(build_wheels, out, host, av_version(version), old)
        models = build_models(out, old)
        wheels = wheels.result()
    manifest = {"python": DEVICE_PYTHON, "wheels": wheels, "models": models}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    tree, kit = travelling_bytes(out)
    total = tree + kit
    print(
        f"device_kit: {out}: kit {mib(kit)} + tree {mib(tree)} = {mib(total)} of the "
        f"{mib(LIMIT)} a device call takes"
    )
    if total > LIMIT:
        print("device_kit: too large to travel", file=sys.stderr)
        return 1
    return 0


def unpack(kit: Path, home: Path) -> int:
    """The kit's weights into the model cache folder `home` (RIFE_HOME), each checked against the
    sha256 the kit recorded. Standard library only: runs before anything is installed."""
    manifest = json.loads((kit / MANIFEST).read_text())
    for name, entry in manifest["models"].items():
        raw = lzma.decompress((kit / "models" / name / "flownet.pkl.xz").read_bytes())
        got = hashlib.sha256(raw).hexdigest()
        if got != entry["sha256"]:
            print(f"device_kit: {name}: sha256 {got} is not the kit's {entry['sha256']}")
            return 1
        dest = home / name / "flownet.pkl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(raw)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".device", help="the kit folder")
    ap.add_argument("--av", help="PyAV version (default: the one installed here)")
    ap.add_argument("--unpack", nargs=2, type=Path, metavar=("KIT", "HOME"))
    args = ap.parse_args()
    if args.unpack:
        return unpack(*args.unpack)
    return build(args.out.resolve(), args.av)


if __name__ == "__main__":
    sys.exit(main())
