"""The phase form of the 4x4 stride-2 transposed convolution equals the operator it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rife_cli.models.transforms.upconv import UpConv, interleave_phases, phase_weight_3x3


@pytest.mark.parametrize("shape", [(1, 6, 5, 7), (3, 4, 8, 8), (2, 9, 1, 3)])
@pytest.mark.parametrize("out_channels", [1, 4, 5])
def test_channels_last_phase_form_matches_conv_transpose(shape, out_channels):
    torch.manual_seed(0)
    layer = UpConv(shape[1], out_channels).double()
    x = torch.randn(*shape, dtype=torch.float64)
    expected = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1)
    with torch.no_grad():
        got = layer(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_contiguous_input_takes_the_native_operator():
    # The reference-like baseline runs NCHW and must compute exactly what the reference does.
    torch.manual_seed(1)
    layer = UpConv(6, 3)
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        got = layer(x)
    assert torch.equal(got, F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1))


def test_state_dict_names_are_those_of_conv_transpose():
    assert set(UpConv(4, 2).state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("shape", [(1, 6, 5, 7), (2, 9, 1, 3)])
@pytest.mark.parametrize("out_channels", [1, 4])
def test_3x3_phase_form_and_interleave_match_conv_transpose(shape, out_channels):
    """The form the Winograd path uses: one 3x3 convolution making the four phases, then one
    interleaving copy."""
    torch.manual_seed(2)
    layer = UpConv(shape[1], out_channels).double()
    x = torch.randn(*shape, dtype=torch.float64)
    expected = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1)
    y = F.conv2d(x, phase_weight_3x3(layer.weight), layer.bias.repeat(4), padding=1)
    got = interleave_phases(y)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_interleave_by_transpose_equals_the_gathering_copy():
    # float32 on the CPU takes OpenCV's transpose; float64 the single gathering copy.
    torch.manual_seed(3)
    y = torch.randn(2, 4 * 5, 6, 7)
    fast = interleave_phases(y)
    exact = interleave_phases(y.double())
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast.double(), exact)
