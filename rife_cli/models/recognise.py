"""Which network a state dict is for, from its keys and tensor shapes alone (model-spec-v4x.md §8).

Every supported layout's exact key set comes from building its network on the meta device, so the
networks and the recogniser cannot disagree. A state dict matches a layout only when every name and
shape is equal; anything else is "unknown", reported against the nearest layout.
"""

from __future__ import annotations

import functools
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from .ifnet_v3 import IFNetV3
from .ifnet_v4x import LAYOUTS, VERSIONS, IFNetV4x, Layout

# Training-only parts of the published files (teacher block, timestep and refinement nets).
AUX_PREFIXES = ("block_tea.", "teacher.", "caltime.", "contextnet.", "unet.")
V3_NAME = "v3.x HD"


@dataclass(frozen=True)
class Candidate:
    name: str  # a layout's name ("4.13") or V3_NAME
    layout: Layout | None  # None for v3.x
    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def versions(self) -> tuple[str, ...]:
        return self.layout.versions if self.layout else ("3.6", "3.8")

    def describe(self) -> str:
        if self.layout is None:
            return "the v3.x HD layout (v3.6, v3.8)"
        vs = ", ".join(self.layout.versions)
        return f"the {self.name} layout (family {self.layout.family}: {vs})"


def _shapes(net: torch.nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((k, tuple(v.shape)) for k, v in net.state_dict().items())


@functools.cache
def candidates() -> tuple[Candidate, ...]:
    with torch.device("meta"):
        out = [Candidate(V3_NAME, None, _shapes(IFNetV3()))]
        out += [Candidate(lay.name, lay, _shapes(IFNetV4x(lay))) for lay in LAYOUTS]
    return tuple(out)


def split_aux(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """`module.` stripped; the training-only tensors removed and counted by prefix."""
    kept: dict[str, torch.Tensor] = {}
    dropped: dict[str, int] = {}
    for k, v in sd.items():
        k = k.removeprefix("module.")
        aux = next((p for p in AUX_PREFIXES if k.startswith(p)), None)
        if aux is None:
            kept[k] = v
        else:
            dropped[aux[:-1]] = dropped.get(aux[:-1], 0) + 1
    return kept, dropped


@dataclass
class Difference:
    missing: list[str]
    extra: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # name, found, expected

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.shapes)

    def describe(self, limit: int = 2) -> str:
        parts = []
        for what, items in (("missing", self.missing), ("unexpected", self.extra)):
            if items:
                more = f" and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{what} {', '.join(items[:limit])}{more}")
        if self.shapes:
            k, got, want = self.shapes[0]
            more = f" and {len(self.shapes) - 1} more" if len(self.shapes) > 1 else ""
            parts.append(f"{k} is {list(got)}, expected {list(want)}{more}")
        return "; ".join(parts)


def difference(sd: dict[str, torch.Tensor], cand: Candidate) -> Difference:
    want = dict(cand.shapes)
    return Difference(
        missing=[k for k in want if k not in sd],
        extra=[k for k in sd if k not in want],
        shapes=[
            (k, tuple(sd[k].shape), want[k])
            for k in want
            if k in sd and tuple(sd[k].shape) != want[k]
        ],
    )


def matches(sd: dict[str, torch.Tensor]) -> tuple[list[Candidate], Candidate, Difference]:
    """The candidates whose key set and shapes equal sd's, and the nearest one with its
    difference (the first match when there is one)."""
    diffs = [(difference(sd, c), c) for c in candidates()]
    exact = [c for d, c in diffs if d.size == 0]
    d, c = min(diffs, key=lambda dc: dc[0].size)
    return exact, c, d


_VERSION_IN_NAME = re.compile(r"(?<![\d.])v?(4\.\d+(?:\.(?:lite|heavy))?)(?![\d])", re.IGNORECASE)


def version_hint(*names: str) -> str | None:
    """A known version written in a file or folder name (flownet_v4.22.pkl, RIFE_4.26.heavy)."""
    for name in names:
        for m in _VERSION_IN_NAME.finditer(name):
            v = m.group(1).lower()
            if v in VERSIONS:
                return v
    return None


def read_state_dict(
    path: Path, label: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The inference tensors (`module.` stripped) and the count of training-only ones dropped."""
    label = label or str(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{label}: not a readable PyTorch weights file ({reason[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on garbage; report, don't crash
        raise ModelError(
            f"{label}: not a readable PyTorch weights file ({type(exc).__name__})"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{label}: not a state dict of tensors")
    return split_aux(sd)
