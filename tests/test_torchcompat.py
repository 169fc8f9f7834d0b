"""The torch floor (defect 1): pyproject's torch>= is the version torchcompat checks, and an older
torch gets one clear line from `rife`, not an AttributeError in a forward."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rife_cli.torchcompat import TORCH_FLOOR, OutOfMemoryError, TorchTooOld, check_torch

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_floor_is_the_checked_one():
    text = (ROOT / "pyproject.toml").read_text()
    (floor,) = re.findall(r'"torch>=([\d.]+)"', text)
    assert tuple(int(x) for x in floor.split(".")) == TORCH_FLOOR


@pytest.mark.parametrize("version", ["2.4.0", "2.4.1+cu121", "2.6.0a0+git1234", "10.0"])
def test_the_floor_and_newer_pass(version):
    check_torch(version)


@pytest.mark.parametrize("version", ["2.3.1", "2.1.2+cu118", "1.13.1"])
def test_older_is_one_clear_line(version):
    with pytest.raises(TorchTooOld, match=rf"^torch {re.escape(version)} is older than 2\.4"):
        check_torch(version)


def test_out_of_memory_is_the_cuda_one():
    assert OutOfMemoryError is torch.cuda.OutOfMemoryError


def test_rife_on_an_older_torch_says_so(tmp_path):
    code = (
        "import sys, torch; torch.__version__ = '2.3.1'\n"
        "from rife_cli.cli import main\n"
        "sys.argv = ['rife', 'frames', sys.argv[1], sys.argv[2], '-o', sys.argv[3]]\n"
        "main()\n"
    )
    golden = ROOT / "tests" / "data" / "golden" / "I0"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(golden / "frame0.png"), str(golden / "frame1.png"),
         str(tmp_path / "mid.png")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    want = (
        "rife: error: torch 2.3.1 is older than 2.4, the oldest rife runs on; "
        "run: pip install 'torch>=2.4'"
    )
    assert proc.stderr.strip().splitlines() == [want]
    assert not (tmp_path / "mid.png").exists()
