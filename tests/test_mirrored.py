"""The v3.x blocks' two mirrored calls: both conv0s at once equal the two calls made apart."""

from __future__ import annotations

import torch
from conftest import golden_pair, psnr

from rife_cli.models.ifnet_v3 import IFBlock, resize
from rife_cli.models.transforms.mirrored import mirrored_stem


def test_mirrored_stem_is_conv0_of_both_calls():
    torch.manual_seed(0)
    block = IFBlock(11).double()
    w0, w1 = torch.rand(2, 3, 64, 96, dtype=torch.float64), torch.rand(2, 3, 64, 96).double()
    mask, flow = torch.randn(2, 1, 64, 96).double(), torch.randn(2, 4, 64, 96).double()
    s = 2.0

    def conv0(x, f):
        return block.conv0(torch.cat([resize(x, 1 / s), resize(f, 1 / s) / s], 1))

    with torch.no_grad():
        both = mirrored_stem(block, torch.cat([w0, w1, mask], 1), flow, s)
        forward = conv0(torch.cat([w0, w1, mask], 1), flow)
        mirrored = conv0(torch.cat([w1, w0, -mask], 1), torch.cat([flow[:, 2:4], flow[:, :2]], 1))
    torch.testing.assert_close(both[:, :90], forward, rtol=0, atol=1e-12)
    torch.testing.assert_close(both[:, 90:], mirrored, rtol=0, atol=1e-12)


def test_cpu_engine_joint_stem_matches_two_separate_calls(engine_v36):
    net = engine_v36.net
    assert net.joint_stem  # the CPU engine's default
    a, b = golden_pair("I1")
    (joint,) = engine_v36.interpolate(a, b, [0.5])
    net.joint_stem = False
    try:
        (apart,) = engine_v36.interpolate(a, b, [0.5])
    finally:
        net.joint_stem = True
    assert psnr(joint, apart) >= 80  # float rounding only


def test_the_reference_like_baseline_keeps_two_separate_calls():
    from rife_cli.bench import baseline_engine
    from rife_cli.models.ifnet_v3 import IFNetV3

    base = baseline_engine("v3.6")
    # the plain network, untransformed: its mirrored_calls make the two calls one after the other
    assert type(base.net).mirrored_calls is IFNetV3.mirrored_calls
