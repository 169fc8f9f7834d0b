"""The weight rule of ../shared/golden-v4/README.md: deterministic weights for any 4.x layout.
Kept apart from the tests (no pytest import) so that scripts/gpu_check.py builds v4.6 and v4.26
the same way on a machine that has only the tree."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

GOLDEN4 = Path(__file__).parent / "data" / "golden-v4"


def keys_of(version: str) -> dict:
    return json.loads((GOLDEN4 / version / "keys.json").read_text())


def make_weights(keys) -> dict[str, torch.Tensor]:
    """The weight rule (float64, then float32) for (name, shape) pairs."""
    sd = {}
    for name, shape in keys:
        rs = np.random.RandomState(zlib.crc32(name.encode()) & 0xFFFFFFFF)
        u = rs.uniform(-1.0, 1.0, size=shape)
        if name.endswith("beta"):
            w = 0.1 * (1.0 + 0.1 * u)
        elif len(shape) == 4:
            gain = 2.2 if shape[-1] == 3 else 1.0
            w = u * gain * (1.0 / np.prod(shape[1:])) ** 0.5
        elif name.endswith("weight"):
            w = 0.25 + 0.05 * u
        else:
            w = 0.05 * u
        sd[name] = torch.from_numpy(w.astype(np.float32))
    return sd


def generated_network(version: str) -> torch.nn.Module:
    """The 4.x network of `version` holding the rule's weights (strict load)."""
    from rife_cli.models.ifnet_v4x import VERSIONS, IFNetV4x

    net = IFNetV4x(VERSIONS[version], version)
    net.load_state_dict(make_weights(keys_of(version)["keys"]), strict=True)
    return net.eval()
