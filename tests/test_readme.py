"""Every command in README.md's `sh` blocks, run as a user would type it, on small clips named as
the README names them: the manual cannot drift from the tool. Skipped: the install lines (CI runs
them itself), and commands that need a GPU or a Ray cluster, each saying so."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import pytest
from clips import make_video, moving_frame

README = Path(__file__).parent.parent / "README.md"
GOLDEN = Path(__file__).parent / "data" / "golden" / "I0"
# Commands the CPU machines of CI cannot run, and why.
NEEDS = (
    (re.compile(r"--hwaccel cuda|nvenc|--devices all|--device cuda"), "needs an NVIDIA GPU"),
    (re.compile(r"--ray (auto|\S+:\d+)"), "needs a Ray cluster"),
)


def readme_commands() -> list[str]:
    """The lines of README.md's ```sh blocks, trailing comments dropped."""
    text = README.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def why_skip(cmd: str) -> str | None:
    if cmd.startswith("pip install"):
        return "the install commands are what CI itself runs"
    for pattern, why in NEEDS:
        if pattern.search(cmd):
            return why
    return None


def test_readme_has_commands_and_none_is_unknown():
    cmds = readme_commands()
    assert len(cmds) >= 15
    for cmd in cmds:
        if why_skip(cmd) is None:
            assert shlex.split(cmd)[0] == "rife", f"the doc test does not know how to run {cmd!r}"


def _anime(path: Path) -> Path:
    """Drawings held two and three frames, as animation is drawn."""
    w, h = 96, 64
    frames = [moving_frame(i // 2 if i < 12 else 6 + (i - 12) // 3, w, h) for i in range(18)]
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    return make_video(path, n=18, w=w, h=h, rate=Fraction(24000, 1001), frames=frames)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files the README's commands name, small."""
    d = tmp_path_factory.mktemp("readme")
    make_video(d / "input.mp4", n=6, w=96, h=64, audio=True)
    make_video(d / "film.mov", n=6, w=96, h=64, rate=Fraction(24000, 1001), audio=True)
    make_video(d / "film.mkv", n=6, w=96, h=64)
    _anime(d / "episode.mkv")
    (d / "videos").mkdir()
    for name in ("one.mp4", "two.mkv"):
        make_video(d / "videos" / name, n=4, w=64, h=48)
    (d / "frames").mkdir()
    for i in range(4):
        cv2.imwrite(str(d / "frames" / f"{i + 1}.png"), moving_frame(i, 96, 64))
    a, b = (cv2.imread(str(GOLDEN / f"frame{i}.png")) for i in (0, 1))
    cv2.imwrite(str(d / "a.png"), cv2.resize(a, (96, 64)))
    cv2.imwrite(str(d / "b.png"), cv2.resize(b, (96, 64)))
    return d


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command(cmd, workdir):
    why = why_skip(cmd)
    if why:
        pytest.skip(why)
    rife = shutil.which("rife") or f"{sys.executable} -m rife_cli"
    argv = shlex.split(rife) + shlex.split(cmd)[1:]
    env = {**os.environ, "RIFE_OFFLINE": "1"}  # the weights come from the test cache
    res = subprocess.run(
        argv,
        check=False,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
