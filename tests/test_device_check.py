"""The GPU machine's situation, reproduced on the CPU: the kit built here, then
scripts/device_check.sh in a venv that has only what that image has of ours (torch, numpy,
opencv-python-headless, click, tqdm: no PyAV, no rife installed), an empty HOME and no network."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import WEIGHTS_CACHE

ROOT = Path(__file__).resolve().parents[1]
# What the device image holds of our dependencies (and what they need in turn).
IMAGE = ("torch", "numpy", "opencv-python-headless", "click", "tqdm")


def _requires(name: str) -> set[str]:
    """name and what it needs (recursively, no extras), as installed distributions."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if n in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            continue  # an optional or platform-only need, absent here as there
        seen.add(n)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return seen


def image_site(folder: Path) -> Path:
    """A folder of links to the image's packages in this interpreter's site-packages: exactly
    those, so that `import av` or `import rife_cli` fails there as on the device."""
    folder.mkdir()
    names = set().union(*(_requires(n) for n in IMAGE))
    assert "av" not in names and "rife-cli" not in names
    for name in names:
        dist = md.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            src = Path(dist.locate_file(top))
            if top.endswith(".dist-info") or top == ".." or not src.exists():
                continue
            if not (folder / top).exists():
                (folder / top).symlink_to(src)
    return folder


def test_device_check_runs_from_the_kit_without_pyav_network_or_install(tmp_path):
    kit = WEIGHTS_CACHE / "device-kit" / ".device"  # kept between runs: rebuilt only if changed
    build = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "device_kit.py"), "--out", str(kit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "RIFE_HOME": str(WEIGHTS_CACHE)},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert re.search(r"= [\d.]+ MiB of the 64\.0 MiB", build.stdout), build.stdout
    assert sorted(p.name for p in (kit / "models").iterdir()) == ["v3.6", "v4.0"]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = image_site(tmp_path / "image-site")
    Path(purelib, "image.pth").write_text(str(site) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    unreachable = "http://127.0.0.1:9"  # the discard port: any fetch fails at once
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "OUT": str(out),
        "PYTHON": str(py),
        "RIFE_DEVICE_KIT": str(kit),
        "http_proxy": unreachable,
        "https_proxy": unreachable,
        "HTTP_PROXY": unreachable,
        "HTTPS_PROXY": unreachable,
        "PIP_NO_INDEX": "1",
        "TMPDIR": str(tmp_path),
    }
    for blocked in ("av", "rife_cli"):
        probe = subprocess.run(
            [str(py), "-c", f"import {blocked}"], env=env, cwd=tmp_path, check=False
        )
        assert probe.returncode != 0, f"{blocked} importable in the image venv"
    # The CPU run's own budget: every check runs (how a tight budget skips is tested apart,
    # below, since which checks fit in a given number of seconds depends on this machine's speed).
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "device_check.sh"), "--device", "cpu"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "fetching" not in proc.stdout + proc.stderr
    assert "| check | result | target | ok | s |" in proc.stdout
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["done"] and report["ok"] and report["device"] == "cpu"
    rows = {r["check"]: r for r in report["rows"]}
    # The kit's weights, loaded offline, give the CPU reference's frames exactly.
    assert rows["golden v3.6 fp32 vs CPU fp32"]["data"]["db"] == "inf"
    assert rows["golden v4.0 fp32 vs CPU fp32"]["data"]["db"] == "inf"
    assert "PyAV" in rows["machine"]["value"]
    assert not [r for r in report["rows"] if r["value"].startswith(("ERROR", "skipped"))]
    md_text = (out / "gpu_check.md").read_text()
    assert all(r["check"] in md_text for r in report["rows"])


def test_a_kit_folder_git_would_commit_is_refused():
    out = ROOT / "tests" / f".kit-probe-{os.getpid()}"
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "device_kit.py"), "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 1
        assert (
            proc.stderr.strip() == f"device_kit: {out} is not ignored by git; add it to .gitignore"
        )
        assert not any(out.iterdir())  # refused before any download
    finally:
        out.rmdir()
