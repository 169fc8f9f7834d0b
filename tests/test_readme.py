"""Every command in README.md's `sh` blocks, run as a user would type it (by bash, pipes and
redirections included) in a folder of small clips named as the README names them: the manual
cannot drift from the tool. `rife` there is this tree's; an http(s):// URL is served from that
folder by a local HTTP server, the URL rewritten to it, so the command really fetches it. Skipped,
each saying why: the install lines (CI runs them itself), commands that need a GPU or a Ray
cluster, and lines that use the ffmpeg program where it is not installed (CI may lack it; where
`ffmpeg` is on PATH they run). The commands run one after another, in README order: some name
the same files."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import cv2
import pytest
from clips import make_video, moving_frame
from media import make_interlaced

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
GOLDEN = Path(__file__).parent / "data" / "golden" / "I0"
# Commands the CPU machines of CI cannot run, and why.
NEEDS = (
    (re.compile(r"--hwaccel cuda|nvenc|--devices all|--device cuda"), "needs an NVIDIA GPU"),
    (re.compile(r"--ray (auto|\S+:\d+)"), "needs a Ray cluster"),
)
# What a line may run: this tool and the ffmpeg program, joined by shell plumbing.
PROGRAMS = ("rife", "ffmpeg")
PLUMBING = ("|", "&&")
REDIRECTS = (">", "<")
URL = re.compile(r"https?://\S+/([^/\s]+)")
# Outputs a README command names, read back: (frames, frame rate) each must hold.
OUTPUTS = {
    "film2x.mkv": (12, 50),  # piped in and out (film.mkv: 6 frames at 25 fps)
    "x265.mp4": (12, 50),  # yuv4mpegpipe into the ffmpeg program
    "film_web2x.mkv": (12, 50),  # from a URL
    "broadcast50p.mkv": (12, 50),  # 6 interlaced frames at 25i: 12 fields, none made
}


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


def simple_commands(cmd: str) -> list[list[str]]:
    """The words of each program a line runs (redirected file names left out); ValueError for
    shell syntax other than pipes, && and redirections to or from a file."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    redirect = False
    for word in lex:
        if word in PLUMBING and not redirect:
            commands.append([])
        elif word in REDIRECTS and not redirect:
            redirect = True
        elif set(word) & set("();<>|&$`") or word.startswith("~"):
            raise ValueError(f"shell syntax the doc test does not run: {word!r} in {cmd!r}")
        elif redirect:
            redirect = False  # the file a redirection names
        else:
            commands[-1].append(word)
    if redirect or not all(commands):
        raise ValueError(f"an incomplete line: {cmd!r}")
    return commands


def all_words(cmd: str) -> set[str]:
    """Every word of a line, the files its redirections name included."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return set(lex)


def why_skip(cmd: str) -> str | None:
    if cmd.startswith("pip install"):
        return "the install commands are what CI itself runs"
    for pattern, why in NEEDS:
        if pattern.search(cmd):
            return why
    return None


def why_not_here(cmd: str) -> str | None:
    """Why this machine cannot run a line CI knows how to run."""
    uses_ffmpeg = any(words[0] == "ffmpeg" for words in simple_commands(cmd))
    if uses_ffmpeg and shutil.which("ffmpeg") is None:
        return "needs the ffmpeg program"
    return None


def test_readme_has_commands_and_none_is_unknown():
    cmds = readme_commands()
    assert len(cmds) >= 15
    for cmd in cmds:
        if why_skip(cmd) is None:
            for words in simple_commands(cmd):
                assert words[0] in PROGRAMS, f"the doc test does not know how to run {cmd!r}"
    named = set().union(*(all_words(c) for c in cmds if why_skip(c) is None))
    assert not set(OUTPUTS) - named, "an output the doc test reads back is no longer in README.md"


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
    make_interlaced(d / "broadcast.ts", "tff", n=6)
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


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(workdir):
    """The work folder over HTTP on this machine: the base URL that stands in for the README's."""
    handler = functools.partial(_Quiet, directory=str(workdir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory, rife_home):
    """The environment the lines run in: `rife` is this tree's (not another checkout's that the
    PATH may hold), and the weights come from the test cache, offline."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "rife"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m rife_cli "$@"\n')
    shim.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "RIFE_OFFLINE": "1"}


def _run(cmd: str, workdir: Path, env: dict, base: str) -> subprocess.CompletedProcess:
    line = URL.sub(lambda m: f"{base}/{m.group(1)}", cmd)
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        check=False,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def runs(request, workdir, served, shell_env):
    """Every selected line this machine can run, started at once and run one at a time in README
    order: line -> future."""
    selected = {
        item.callspec.params["cmd"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_readme_command"
    }
    todo = [
        c
        for c in readme_commands()
        if c in selected and why_skip(c) is None and why_not_here(c) is None
    ]
    with ThreadPoolExecutor(1) as pool:
        yield {c: pool.submit(_run, c, workdir, shell_env, served) for c in todo}


def _frames_and_rate(path: Path) -> tuple[int, Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for _ in c.decode(s)), s.average_rate


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command(cmd, workdir, runs):
    why = why_skip(cmd) or why_not_here(cmd)
    if why:
        pytest.skip(why)
    res = runs[cmd].result()
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    for name in set(OUTPUTS) & all_words(cmd):
        frames, rate = OUTPUTS[name]
        assert _frames_and_rate(workdir / name) == (frames, rate), f"{cmd}: {name}"
