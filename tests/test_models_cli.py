"""`rife models`, fetching with checksum verification, and weights that are not what they claim."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import GOLDEN

from rife_cli.cli import main
from rife_cli.models import registry


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_models_lists_every_name(rife_home):
    res = run("models")
    assert res.exit_code == 0
    for name in ("v3.6", "v3.8", "v4.0"):
        assert name in res.output
    assert str(rife_home / "v3.6" / "flownet.pkl") in res.output


def test_fetch_with_wrong_checksum_caches_nothing(tmp_path, monkeypatch):
    bad = dataclasses.replace(registry.MODELS["v3.6"], sha256="0" * 64)
    monkeypatch.setitem(registry.MODELS, "v3.6", bad)
    res = run("models", "fetch", "v3.6", env={"RIFE_HOME": str(tmp_path)})
    assert res.exit_code == 1
    assert "checksum mismatch" in res.output and "nothing was cached" in res.output
    assert not (tmp_path / "v3.6" / "flownet.pkl").exists()
    assert list((tmp_path / "v3.6").iterdir()) == []  # no temporary leftovers


def test_offline_names_the_fetch_command(tmp_path):
    a, b = GOLDEN / "I0" / "frame0.png", GOLDEN / "I0" / "frame1.png"
    for env, flag in (
        ({"RIFE_HOME": str(tmp_path)}, ["--offline"]),
        ({"RIFE_HOME": str(tmp_path), "RIFE_OFFLINE": "1"}, []),
    ):
        res = run("frames", a, b, "-o", tmp_path / "o", *flag, env=env)
        assert res.exit_code == 1
        assert "rife models fetch v3.6" in res.output
    assert not (tmp_path / "o").exists()


def _weights(tmp_path, kind):
    p = tmp_path / f"{kind}.pkl"
    if kind == "random":
        p.write_bytes(os.urandom(4096))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        data = (Path(os.environ["RIFE_HOME"]) / "v3.6" / "flownet.pkl").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "v2":
        torch.save(
            {
                "module.block0.conv0.0.0.weight": torch.zeros(3, 3),
                "module.fusionnet.x": torch.zeros(1),
            },
            p,
        )
    elif kind == "not_a_dict":
        torch.save([torch.zeros(1)], p)
    return p


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "v2", "not_a_dict"])
def test_bad_weights_one_line_error(tmp_path, kind):
    p = _weights(tmp_path, kind)
    a, b = GOLDEN / "I0" / "frame0.png", GOLDEN / "I0" / "frame1.png"
    res = run("frames", a, b, "--model", p, "-o", tmp_path / "o")
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0], res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_model_dir_train_log_convention(tmp_path, rife_home):
    import shutil

    (tmp_path / "train_log").mkdir()
    shutil.copy(rife_home / "v3.6" / "flownet.pkl", tmp_path / "train_log" / "flownet.pkl")
    from rife_cli.models.loading import resolve

    src = resolve(str(tmp_path / "train_log"))
    assert src.path == tmp_path / "train_log" / "flownet.pkl" and src.explicit
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert resolve(None).label == "train_log"
    finally:
        os.chdir(cwd)


def test_a_subcommands_usage_error_names_its_own_help():
    from click.testing import CliRunner

    from rife_cli.cli import main

    res = CliRunner().invoke(main, ["models", "fetch", "nosuch"])
    assert res.exit_code == 2 and "(rife models fetch --help)" in res.output


def test_a_model_cache_that_cannot_be_written_is_said(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rife_cli.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("RIFE_HOME", str(blocker / "cache"))
    res = CliRunner().invoke(main, ["models", "fetch", "v4.6"])
    assert res.exit_code == 1
    assert "cannot write there (Not a directory); set RIFE_HOME to a writable folder" in res.output
    assert "fetching" not in res.output and "unexpected" not in res.output
