"""v3.x inner channels zero-padded to multiples of 8 (for GPU tensor cores): the same frames."""

from __future__ import annotations

import pytest
import torch
from conftest import golden_pair, psnr

from rife_cli.errors import UsageError
from rife_cli.models.ifnet_v3 import IFNetV3
from rife_cli.models.transforms.padding import pad_channels


def test_padded_network_computes_the_same_with_zero_channels_between():
    torch.manual_seed(0)
    net = IFNetV3().double().eval()
    padded = pad_channels(net)
    block = padded.block2
    assert block.conv0[0][0].out_channels == 48 and block.conv0[1][0].out_channels == 96
    assert block.convblock3[1][0].weight.shape == (96, 96, 3, 3)
    assert block.conv1[0].weight.shape == (96, 48, 4, 4) and block.conv1[2].out_channels == 4
    assert net.block2.convblock0[0][0].out_channels == 90  # the original is left alone
    inner = []
    block.convblock1.register_forward_hook(lambda m, i, o: inner.append(o))
    img0, img1 = torch.rand(1, 3, 64, 96).double(), torch.rand(1, 3, 64, 96).double()
    with torch.no_grad():
        want, got = net(img0, img1), padded(img0, img1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert inner and all(float(o[:, 90:].abs().max()) == 0 for o in inner)


def test_engine_with_padded_channels_makes_the_same_frames(engine_v36):
    from rife_cli.engine import Interpolator

    padded = Interpolator("v3.6", device="cpu", precision="fp32", pad_channels=8)
    assert padded.net.block0.convblock0[0][0].out_channels == 96
    # Twice the golden size: the finest trunk takes the Winograd path, heads merged, lanes.
    a, b = golden_pair("I1", (896, 512))
    (want,) = engine_v36.interpolate(a, b, [0.5])
    (got,) = padded.interpolate(a, b, [0.5])
    assert psnr(got, want) >= 80  # float rounding only


def test_padding_is_for_v3_models():
    from rife_cli.engine import Interpolator

    with pytest.raises(UsageError, match="v3.x"):
        Interpolator("v4.0", device="cpu", precision="fp32", pad_channels=8)
