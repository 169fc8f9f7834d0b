"""The 4.x networks (4.1-4.26.heavy) against ../shared/golden-v4, recognition of weight files,
named 4.x models fetched from a URL with a recorded sha256, --ensemble and --model-version."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import DATA, psnr
from weights_rule import keys_of, make_weights

from rife_cli.cli import main
from rife_cli.engine import Interpolator, Request
from rife_cli.errors import ModelError
from rife_cli.models.ifnet_v4x import LAYOUTS, VERSIONS, IFNetV4x
from rife_cli.models.loading import ModelSource, build_network
from rife_cli.models.recognise import matches, read_state_dict

GOLDEN4 = DATA / "golden-v4"
ALL_VERSIONS = sorted(p.name for p in GOLDEN4.iterdir() if p.is_dir())


def weights_file(version: str, tmp: Path, name: str | None = None) -> Path:
    """A flownet.pkl as Practical-RIFE saves one: `module.` prefix, training-only extras."""
    sd = {"module." + k: v for k, v in make_weights(keys_of(version)["keys"]).items()}
    sd["module.teacher.conv0.0.0.weight"] = torch.zeros(4, 3, 3, 3)
    sd["module.caltime.0.weight"] = torch.zeros(2)
    p = tmp / (name or f"flownet_v{version}.pkl")
    torch.save(sd, p)
    return p


def frames() -> tuple[np.ndarray, np.ndarray]:
    return cv2.imread(str(GOLDEN4 / "frame0.png")), cv2.imread(str(GOLDEN4 / "frame1.png"))


def engine_for(net: torch.nn.Module, precision: str = "fp32") -> Interpolator:
    return Interpolator("test", device="cpu", precision=precision, network=net)


def run_golden(engine: Interpolator, ts=(Fraction(1, 2), Fraction(3, 10)), pair=None):
    """Frames at ts as the goldens were made: padded to the modulo, truncated to uint8."""
    a, b = pair or frames()
    x = engine.to_tensor([a, b])
    made = engine.make(x[0:1], x[1:2], [Request(0, t) for t in ts])
    return [engine.to_arrays(m, *a.shape[:2], np.uint8, rounding="truncate")[0] for m in made]


def net_for(version: str, ensemble: bool = False) -> IFNetV4x:
    net = IFNetV4x(VERSIONS[version], version, ensemble)
    net.load_state_dict(make_weights(keys_of(version)["keys"]), strict=True)
    return net.eval()


# ----- layouts


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_layout_is_the_published_key_set(version):
    """Each version's network has exactly the names and shapes (in order) of keys.json."""
    d = keys_of(version)
    lay = VERSIONS[version]
    with torch.device("meta"):
        net = IFNetV4x(lay, version)
    have = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert have == d["keys"]
    assert sum(v.numel() for v in net.state_dict().values()) == d["n_params"]
    assert lay.family == d["family"] and list(lay.scales) == d["scale_list"]
    assert lay.enc_out == (d["encoder_channels"] or 0)
    # 4.1 pads to 64, not keys.json's 32: its large-motion retry doubles the scales (spec §6).
    assert lay.modulo == (64 if version == "4.1" else d["modulo"])


def test_versions_in_one_layout_share_keys_and_no_others_do():
    sets = {v: json.dumps(keys_of(v)["keys"]) for v in ALL_VERSIONS}
    for v in ALL_VERSIONS:
        same = {w for w in ALL_VERSIONS if sets[w] == sets[v]}
        assert same == set(VERSIONS[v].versions) - {"4.0"}, v


# ----- the networks against the goldens


@pytest.mark.parametrize(
    "layout", [lay for lay in LAYOUTS if lay.name != "4.0"], ids=lambda lay: lay.name
)
def test_goldens(layout):
    """One network per layout (versions sharing a key set get the same weights by the rule and run
    identical code), checked against every one of its versions' frames at t = 0.5 and 0.3."""
    first = layout.versions[0]
    net = build_network(
        make_weights(keys_of(first)["keys"]), ModelSource(Path(f"flownet_v{first}.pkl"), "x", True)
    )
    assert isinstance(net, IFNetV4x) and net.layout is layout
    got = run_golden(engine_for(net))
    for version in layout.versions:
        for frame, name in zip(got, ("t0.50", "t0.30")):
            ref = cv2.imread(str(GOLDEN4 / version / f"{name}.png"))
            assert psnr(frame, ref) >= 50, (version, name, psnr(frame, ref))
    # t matters: the two frames differ (the goldens differ by 19-44 dB)
    assert psnr(got[0], got[1]) < 48


# ----- recognition of files


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_version_is_recognised_from_keys_and_shapes(version):
    sd = {k: torch.empty(s) for k, s in keys_of(version)["keys"]}
    exact, _, _ = matches(sd)
    versions = {v for c in exact for v in c.versions}
    assert version in versions
    assert versions == set(VERSIONS[version].versions) | (
        {"4.0", "4.1"} if version == "4.1" else set()
    )


def test_file_recognised_with_training_tensors_dropped(tmp_path):
    p = weights_file("4.22", tmp_path, "flownet.pkl")
    sd, dropped = read_state_dict(p)
    assert dropped == {"teacher": 1, "caltime": 1}
    notes = []
    src = ModelSource(p, str(p), True)
    net = build_network(sd, src, notice=notes.append, dropped=dropped)
    assert net.layout.name == "4.21"
    # the name says nothing: the three versions with this key set are named
    assert src.label == f"v4.21/v4.22/v4.23 (recognised from {p})"
    assert "2 training-only tensors dropped (teacher 1, caltime 1)" in notes[0]


def test_version_from_file_name_or_model_version(tmp_path):
    p = weights_file("4.22", tmp_path)  # flownet_v4.22.pkl, as vs-rife names it
    src = ModelSource(p, str(p), True)
    build_network(read_state_dict(p)[0], src)
    assert src.label.startswith("v4.22 (recognised from")
    src = ModelSource(p, str(p), True)
    build_network(read_state_dict(p)[0], src, model_version="4.23")
    assert src.label.startswith("v4.23 (")
    with pytest.raises(ModelError, match=r"--model-version 4.6: .* not those of v4.6"):
        build_network(read_state_dict(p)[0], ModelSource(p, str(p), True), model_version="4.6")


def test_v40_and_v41_share_tensors_and_differ_in_padding(tmp_path):
    p = weights_file("4.1", tmp_path, "flownet.pkl")
    notes = []
    net = build_network(read_state_dict(p)[0], ModelSource(p, str(p), True), notice=notes.append)
    assert net.version == "4.1" and net.pad_base == 64
    assert "v4.0 and v4.1" in notes[0] and "--model-version" in notes[0]
    net = build_network(read_state_dict(p)[0], ModelSource(p, str(p), True), model_version="4.0")
    assert net.version == "4.0" and net.pad_base == 128


@pytest.mark.parametrize(
    "change,expect",
    [
        ("drop", r"nearest is the 4.25 layout .* missing block4.lastconv.0.bias"),
        ("extra", r"nearest is the 4.25 layout .* unexpected block0.fusion.weight"),
        ("shape", r"nearest is the 4.25 layout .* encode.cnn0.bias is \[15\], expected \[16\]"),
    ],
)
def test_a_file_that_fits_no_layout_names_the_nearest(tmp_path, change, expect):
    sd = make_weights(keys_of("4.26")["keys"])
    if change == "drop":
        del sd["block4.lastconv.0.bias"]
    elif change == "extra":
        sd["block0.fusion.weight"] = torch.zeros(3)
    else:
        sd["encode.cnn0.bias"] = torch.zeros(15)
    p = tmp_path / "flownet.pkl"
    torch.save({"module." + k: v for k, v in sd.items()}, p)
    res = CliRunner().invoke(
        main, ["frames", str(GOLDEN4 / "frame0.png"), str(GOLDEN4 / "frame1.png"), "--model",
               str(p), "-o", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "unknown weights layout" in lines[0], res.output
    import re

    assert re.search(expect, lines[0]), lines[0]


def test_cli_frames_with_a_train_log_file(tmp_path, monkeypatch):
    """`rife frames a b` picks up ./train_log/flownet.pkl, says which version it is, and makes
    what the golden network makes."""
    (tmp_path / "train_log").mkdir()
    weights_file("4.26.heavy", tmp_path / "train_log", "flownet.pkl")
    monkeypatch.chdir(tmp_path)
    a, b = GOLDEN4 / "frame0.png", GOLDEN4 / "frame1.png"
    res = CliRunner().invoke(main, ["frames", str(a), str(b), "--ratio", "0.3", "-o", "out"])
    assert res.exit_code == 0, res.output
    assert "model v4.26.heavy (recognised from train_log)" in res.stderr
    made = cv2.imread(str(tmp_path / "out" / "001.png"))
    # the CLI rounds to nearest where the goldens truncate: within half a level
    assert psnr(made, cv2.imread(str(GOLDEN4 / "4.26.heavy" / "t0.30.png"))) >= 45


# ----- ensemble


@pytest.mark.parametrize("version", ["4.1", "4.4", "4.6", "4.15.lite"])
def test_ensemble_treats_both_orders_alike(version):
    """With --ensemble each block averages the pair and the reversed pair, so (a, b, t) and
    (b, a, 1 - t) give the same frame; without it they differ."""
    a, b = frames()
    t = [Fraction(3, 10)]
    for ensemble, check in ((True, lambda p: p >= 60), (False, lambda p: p < 45)):
        engine = engine_for(net_for(version, ensemble))
        (fwd,) = run_golden(engine, t, (a, b))
        (rev,) = run_golden(engine, [1 - t[0]], (b, a))
        assert check(psnr(fwd, rev)), (version, ensemble, psnr(fwd, rev))


def test_ensemble_refused_for_family_e(tmp_path):
    p = weights_file("4.25", tmp_path)
    res = CliRunner().invoke(
        main, ["frames", str(GOLDEN4 / "frame0.png"), str(GOLDEN4 / "frame1.png"), "--model",
               str(p), "--ensemble", "-o", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "--ensemble" in res.output and "family E" in res.output
    assert not (tmp_path / "o").exists()


# ----- precision


def test_half_precision_overflow_redone_in_fp32_for_4x():
    """A 4.x pair whose bf16 output is not finite is redone in fp32: the fp32 frame, counted."""
    net = net_for("4.22")
    full = engine_for(net).interpolate(*frames(), [0.5])[0]

    def overflow(module, inputs, out):
        if torch.is_autocast_enabled("cpu"):
            return out * float("inf")
        return out

    net.block0.lastconv.register_forward_hook(overflow)
    engine = engine_for(net, "bf16")
    (mid,) = engine.interpolate(*frames(), [0.5])
    assert engine.fp32_fallbacks == 1
    assert np.array_equal(mid, full)


def test_bf16_close_to_fp32_for_4x():
    net = net_for("4.13")
    full = engine_for(net).interpolate(*frames(), [0.5])[0]
    half = engine_for(net, "bf16").interpolate(*frames(), [0.5])[0]
    assert psnr(half, full) >= 35, psnr(half, full)


# ----- named 4.x models: fetched from a URL, sha256 recorded at the first download


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty model cache of its own (the session's cache must not gain 4.x models)."""
    h = tmp_path / "home"
    monkeypatch.setenv("RIFE_HOME", str(h))
    return h


@pytest.fixture
def mirror(tmp_path):
    """A folder served over HTTP on localhost, standing in for the release URL."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_fetch_from_served_folder_records_and_checks_sha256(home, mirror, monkeypatch):
    import hashlib

    folder, url = mirror
    p = weights_file("4.15.lite", folder)
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    monkeypatch.setenv("RIFE_MODEL_MIRROR", url)
    res = cli("models", "fetch", "v4.15.lite")
    assert res.exit_code == 0, res.output
    cached = home / "v4.15.lite" / "flownet.pkl"
    assert cached.read_bytes() == p.read_bytes()
    assert (home / "v4.15.lite" / "flownet.pkl.sha256").read_text().split()[0] == sha
    listing = cli("models").output
    assert f"sha256 {sha}" in listing and "v4.26.heavy" in listing
    # later loads are checked against the record
    a, b = GOLDEN4 / "frame0.png", GOLDEN4 / "frame1.png"
    res = cli("frames", a, b, "--model", "v4.15.lite", "--ratio", "0.3", "-o", home / "o")
    assert res.exit_code == 0, res.output
    data = bytearray(cached.read_bytes())
    data[-100] ^= 1
    cached.write_bytes(bytes(data))
    res = cli("frames", a, b, "--model", "v4.15.lite", "-o", home / "o2")
    assert res.exit_code == 1
    assert "differs from the" in res.output and "rife models fetch v4.15.lite" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_fetch_from_file_url_refuses_the_wrong_layout(home, tmp_path, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    weights_file("4.6", folder, "flownet_v4.5.pkl")  # 4.6's tensors under 4.5's name
    monkeypatch.setenv("RIFE_MODEL_MIRROR", folder.as_uri())
    res = cli("models", "fetch", "v4.5")
    assert res.exit_code == 1
    assert "does not hold model v4.5" in res.output and "nothing was cached" in res.output
    assert not (home / "v4.5" / "flownet.pkl").exists()
    assert list((home / "v4.5").iterdir()) == []


def test_missing_model_offline_or_unreachable_is_one_line_with_url(home, monkeypatch):
    a, b = GOLDEN4 / "frame0.png", GOLDEN4 / "frame1.png"
    res = cli("frames", a, b, "--model", "v4.26", "--offline", "-o", home / "o")
    assert res.exit_code == 1
    line = res.output.strip()
    assert "\n" not in line and "rife models fetch v4.26" in line
    assert "https://github.com/HolyWu/vs-rife/releases/download/model/flownet_v4.26.pkl" in line
    monkeypatch.setenv("RIFE_MODEL_MIRROR", "http://127.0.0.1:9/")  # nothing listens there
    res = cli("frames", a, b, "--model", "v4.26", "-o", home / "o")
    assert res.exit_code == 1 and "could not be downloaded" in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("rife: error:")]
    assert len(errors) == 1 and "rife models fetch v4.26" in errors[0]
    assert "http://127.0.0.1:9/flownet_v4.26.pkl" in errors[0] and "Traceback" not in res.output
    assert not (home / "o").exists()


def test_hand_copied_model_gets_its_sha256_recorded(home):
    (home / "v4.26").mkdir(parents=True)
    weights_file("4.26", home / "v4.26", "flownet.pkl")
    a, b = GOLDEN4 / "frame0.png", GOLDEN4 / "frame1.png"
    res = cli("frames", a, b, "--model", "v4.26", "--offline", "--ratio", "0.3", "-o", home / "o")
    assert res.exit_code == 0, res.output
    assert "recorded sha256" in res.stderr
    assert (home / "v4.26" / "flownet.pkl.sha256").is_file()


def test_timing_needing_v4_takes_the_newest_cached_4x(home):
    from rife_cli.models.cache import newest_cached_v4

    assert newest_cached_v4()[0] == "v4.0"
    for name in ("v4.22", "v4.26.heavy", "v4.25.lite", "v4.26"):
        (home / name).mkdir(parents=True)
        weights_file(name[1:], home / name, "flownet.pkl")
    model, why = newest_cached_v4()
    assert model == "v4.26" and "newest" in why
    a, b = GOLDEN4 / "frame0.png", GOLDEN4 / "frame1.png"
    res = cli("frames", a, b, "--multi", "3", "--offline", "-o", home / "o")
    assert res.exit_code == 0, res.output
    assert "using model v4.26 (the newest 4.x model in the cache)" in res.stderr


def test_interpolate_json_names_the_recognised_version(tmp_path):
    from clips import make_video

    clip = make_video(tmp_path / "c.mp4", n=3, w=64, h=48)
    p = weights_file("4.17.lite", tmp_path, "flownet.pkl")
    res = cli("interpolate", clip, "--model", p, "-o", tmp_path / "o.mp4", "--json", "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["model"] == f"v4.15.lite/v4.16.lite/v4.17.lite (recognised from {p})"


# ----- load-time transforms reach every family


@pytest.mark.parametrize("version", ["4.1", "4.6", "4.14.lite", "4.26.heavy"])
def test_transforms_apply_to_every_family(version, monkeypatch):
    """The engine's CPU speed-ups (phase-split transposed convolutions, Winograd 3x3 convolutions
    run per sample) reach each 4.x family without changing names or results beyond rounding."""
    import copy

    from rife_cli.models import transforms
    from rife_cli.models.transforms import winograd
    from rife_cli.models.transforms.upconv import UpConv

    plain = net_for(version)
    fast = transforms.apply(copy.deepcopy(plain), torch.device("cpu"))
    assert list(fast.state_dict()) == list(plain.state_dict())
    kinds = [type(m) for m in fast.modules()]
    assert UpConv in kinds and winograd.Conv3x3 in kinds
    if version == "4.14.lite":  # grouped convolutions stay native
        assert all(m.groups == 2 for m in fast.modules() if type(m) is torch.nn.Conv2d
                   and m.kernel_size == (3, 3) and m.stride == (1, 1))  # fmt: skip
    calls = []
    real = torch._nnpack_spatial_convolution
    monkeypatch.setattr(
        torch, "_nnpack_spatial_convolution", lambda *a: calls.append(1) or real(*a)
    )
    # the finest body runs at 48x32 (1536 positions): large enough for the Winograd path
    x = torch.from_numpy(np.stack(frames())).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.pad(x, (0, 192 - 184, 0, 128 - 120))
    t = torch.tensor([0.3])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a CPU lane, where Winograd runs
    try:
        with torch.inference_mode():
            want = plain(x[0:1], x[1:2], t)
            with winograd.enabled(True):
                xc = x.contiguous(memory_format=torch.channels_last)
                got = fast.to(memory_format=torch.channels_last)(xc[0:1], xc[1:2], t)
    finally:
        torch.set_num_threads(threads)
    if winograd.available():
        # 4.14.lite's trunks are grouped convolutions, which NNPACK does not take
        assert bool(calls) == (version != "4.14.lite"), len(calls)
    u = [(o[0] * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy() for o in (want, got)]
    assert psnr(u[0], u[1]) >= 60, psnr(u[0], u[1])
