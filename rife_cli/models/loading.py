"""Resolving a --model value to a weights file and building the matching network from it."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from .cache import cached_path, fetch, fetch_command, is_offline
from .ifnet_v3 import IFNetV3
from .ifnet_v4 import IFNetV4
from .registry import DEFAULT_MODEL, MODELS

# Parts of the published files used only in training (teacher block, refinement nets).
UNUSED_PREFIXES = ("block_tea.", "contextnet.", "unet.")


@dataclass
class ModelSource:
    path: Path
    label: str  # the name, or the path as the user gave it
    explicit: bool  # chosen by the user (--model, $RIFE_MODEL, ./train_log) rather than by default


def resolve_default(spec: str | None) -> str | None:
    """The model the user chose: --model, else $RIFE_MODEL, else ./train_log; None for the default."""
    if spec:
        return spec
    if os.environ.get("RIFE_MODEL"):
        return os.environ["RIFE_MODEL"]
    if Path("train_log/flownet.pkl").is_file():
        return "train_log"
    return None


def resolve(
    spec: str | None, offline: bool = False, notice: Callable[[str], None] | None = None
) -> ModelSource:
    """--model NAME | DIR (holding flownet.pkl) | FILE; else $RIFE_MODEL, ./train_log, default."""
    spec = resolve_default(spec)
    explicit = spec is not None
    if spec is None:
        spec = DEFAULT_MODEL
    if spec in MODELS:
        path = cached_path(spec)
        if not path.is_file():
            if offline or is_offline():
                raise ModelError(
                    f"model {spec} is not cached and offline mode is on; run: {fetch_command([spec])}"
                )
            path = fetch(spec, notice)
        return ModelSource(path, spec, explicit)
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "flownet.pkl"
    if not p.is_file():
        raise ModelError(f"{spec}: no such model name or weights file (names: {', '.join(MODELS)})")
    return ModelSource(p, spec, explicit)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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
        raise ModelError(f"{path}: not a readable PyTorch weights file ({reason[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on garbage; report, don't crash
        raise ModelError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__})"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return {
        k.removeprefix("module."): v
        for k, v in sd.items()
        if not k.removeprefix("module.").startswith(UNUSED_PREFIXES)
    }


def build_network(sd: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    if "block3.lastconv.weight" in sd:
        net: torch.nn.Module = IFNetV4()
    elif "block0.convblock0.0.0.weight" in sd and "block3.conv0.0.0.weight" not in sd:
        net = IFNetV3()
    else:
        raise ModelError(
            f"{path}: unknown weights layout (not a RIFE v3.x HD or v4.0 model; v2 and other versions are not supported)"
        )
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelError(
            f"{path}: weights do not fit the {net.family} network ({detail[:160]})"
        ) from None
    return net.eval()


def load_network(path: Path) -> torch.nn.Module:
    return build_network(read_state_dict(path), path)
