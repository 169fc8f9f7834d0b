"""The Winograd path for 3x3 convolutions: where it runs, where it must not, and what it computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import golden_pair, psnr

from rife_cli.bench import baseline_engine
from rife_cli.models.transforms import winograd
from rife_cli.models.transforms.winograd import Conv3x3, per_sample

needs_nnpack = pytest.mark.skipif(
    not winograd.available(), reason="this PyTorch build or CPU has no NNPACK"
)


@pytest.fixture
def one_thread():
    """PyTorch with one intra-op thread in this thread, as in a CPU lane: where Winograd runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cpu_engine(winograd_pays: bool):
    """The default CPU engine as built on a CPU where Winograd pays (AVX2 only) or does not."""
    from unittest import mock

    from rife_cli.engine import Interpolator

    with mock.patch("rife_cli.engine.cpu.winograd_pays", return_value=winograd_pays):
        return Interpolator("v3.6", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def winograd_engine():
    return cpu_engine(True)


@pytest.fixture
def nnpack_calls(monkeypatch):
    """Counts calls into NNPACK while passing them through."""
    calls = []
    real = torch._nnpack_spatial_convolution

    def spy(*args, **kwargs):
        calls.append(tuple(args[0].shape) + (args[1].shape[0],))  # input shape, out channels
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", spy)
    return calls


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 8, 128, 192), (1, 90, 160, 160), (1, 3, 96, 257)])
def test_winograd_conv_matches_direct_convolution(shape, nnpack_calls, one_thread):
    assert shape[2] * shape[3] >= winograd.MIN_POSITIONS
    torch.manual_seed(0)
    layer = Conv3x3(shape[1], 11)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = F.conv2d(x.double(), layer.weight.double(), layer.bias.double(), padding=1)
        with winograd.enabled(True):
            got = layer(x)
    assert len(nnpack_calls) == 1
    assert got.shape == expected.shape
    # Float rounding of a different summation order, nothing more.
    err = float((got.double() - expected).abs().max() / expected.abs().max())
    assert err < 1e-5, err


@needs_nnpack
def test_direct_convolution_where_winograd_does_not_apply(nnpack_calls, one_thread):
    torch.manual_seed(1)
    layer = Conv3x3(4, 4)
    strided = Conv3x3(4, 4, stride=2)
    x = torch.randn(1, 4, 128, 192)
    small = torch.randn(1, 4, 16, 31)  # fewer positions than winograd.MIN_POSITIONS
    assert 16 * 31 < winograd.MIN_POSITIONS
    with torch.no_grad():
        direct = F.conv2d(x, layer.weight, layer.bias, padding=1)
        assert torch.equal(layer(x), direct)  # not enabled: the baseline's path
        with winograd.enabled(True):
            pair = torch.cat([x, x])  # batch 2
            assert torch.equal(layer(pair), F.conv2d(pair, layer.weight, layer.bias, padding=1))
            strided(x)  # stride 2
            layer(small)  # a small feature map
            Conv3x3(4, 4).double()(x.double())  # not fp32
            with torch.autocast("cpu", dtype=torch.bfloat16):
                layer(x)  # half precision runs the native (autocast) operator
            torch.set_num_threads(2)
            layer(x)  # more than one intra-op thread (NNPACK's own pool would compete)
    assert nnpack_calls == []


@needs_nnpack
def test_per_sample_runs_each_sample_alone_and_keeps_the_layout(nnpack_calls, one_thread):
    torch.manual_seed(2)
    layer = Conv3x3(6, 6)
    x = torch.randn(3, 6, 128, 192).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = layer(x)
        with winograd.enabled(True):
            got = per_sample(lambda f: layer(f) + f, x)
    assert nnpack_calls == [(1, 6, 128, 192, 6)] * 3
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected + x, rtol=1e-4, atol=1e-4)


@needs_nnpack
def test_default_engine_uses_winograd_and_the_baseline_does_not(winograd_engine, nnpack_calls):
    a, b = golden_pair("I2")  # 448x256: trunks at 112x64, 56x32 and 28x16
    (ref,) = baseline_engine("v3.6").interpolate(a, b, [0.5])
    assert nnpack_calls == []
    (ours,) = winograd_engine.interpolate(a, b, [0.5])
    # In block2 and block1, per mirrored sample: 8 trunk convolutions (90 channels out) and the
    # two heads' first layers as one (4 phases x 2 x 45 = 360 out); one sample per call (in lanes,
    # or the main thread on a 1-core machine). block0's 448 positions stay direct.
    expected = []
    for h, w in ((64, 112), (32, 56)):
        expected += [(1, 90, h, w, 90)] * 16 + [(1, 90, h, w, 360)] * 2
    assert sorted(nnpack_calls) == sorted(expected)
    assert psnr(ours, ref) >= 50


@needs_nnpack
def test_v3_block_winograd_path_matches_its_direct_path(winograd_engine, one_thread, nnpack_calls):
    """A v3.x block with its trunk and both heads' first layers by Winograd computes what the
    direct path computes, to float rounding."""
    torch.manual_seed(3)
    block = winograd_engine.net.block2
    x = torch.rand(2, 7, 128, 224).contiguous(memory_format=torch.channels_last)
    flow = (torch.rand(2, 4, 128, 224) * 4 - 2).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        direct = block(x, flow, 1.0)
        with winograd.enabled(True):
            fast = block(x, flow, 1.0)
    assert len(nnpack_calls) == 2 * (8 + 1)  # per sample: 8 trunk convolutions, 1 for the heads
    for d, f in zip(direct, fast):
        assert f.is_contiguous(memory_format=torch.channels_last)
        err = float((f - d).abs().max() / d.abs().max())
        assert err < 1e-4, err


@needs_nnpack
def test_no_winograd_where_avx512_convolutions_are_faster(nnpack_calls):
    """On a CPU with AVX-512 oneDNN's direct convolutions beat NNPACK's AVX2 Winograd (measured
    2.07 vs 1.63 s a 720p v3.6 pair): the default engine keeps them there."""
    a, b = golden_pair("I2")
    cpu_engine(False).interpolate(a, b, [0.5])
    assert nnpack_calls == []
