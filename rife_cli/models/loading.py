"""Resolving a --model value to a weights file, recognising its layout and building the network."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from .cache import (
    cached_path,
    check_cached,
    fetch,
    file_sha256,
    is_offline,
    missing_message,
    record_first_load,
)
from .ifnet_v3 import IFNetV3
from .ifnet_v4x import VERSIONS, IFNetV4x, newest_first
from .recognise import matches, read_state_dict, version_hint
from .registry import DEFAULT_MODEL, MODELS


@dataclass
class ModelSource:
    path: Path
    label: str  # the name, or the path as the user gave it; after loading, the version too
    explicit: bool  # chosen by the user (--model, $RIFE_MODEL, ./train_log) rather than by default
    name: str | None = None  # the registry name of a named model


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
    name = spec if spec in MODELS else f"v{spec}" if f"v{spec}" in MODELS else None
    if name is not None:
        path = cached_path(name)
        if not path.is_file():
            if offline or is_offline():
                raise ModelError(missing_message(name, "offline mode is on"))
            path = fetch(name, notice)
        return ModelSource(check_cached(name, notice), name, explicit, name)
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "flownet.pkl"
    if not p.is_file():
        raise ModelError(
            f"{spec}: no such model name or weights file (names: v3.6, v3.8, v4.0 ... v4.26.heavy; "
            "rife models lists them)"
        )
    return ModelSource(p, spec, explicit)


def _choose_version(
    versions: list[str], source: ModelSource, model_version: str | None
) -> tuple[str | None, str]:
    """The version among those whose layout the file holds, and how it was chosen."""
    if model_version:
        v = model_version.removeprefix("v")
        if v not in versions:
            raise ModelError(
                f"--model-version {model_version}: {source.path} holds the tensors of "
                f"{', '.join('v' + x for x in versions)}, not those of v{v}"
            )
        return v, "--model-version"
    if source.name is not None and source.name.removeprefix("v") in versions:
        return source.name.removeprefix("v"), "name"
    hint = version_hint(source.path.name, source.path.parent.name, source.label)
    if hint in versions:
        return hint, "file name"
    if "4.0" in versions and file_sha256(source.path) == MODELS["v4.0"].sha256:
        return "4.0", "sha256"
    return None, ""


def build_network(
    sd: dict[str, torch.Tensor],
    source: ModelSource,
    model_version: str | None = None,
    ensemble: bool = False,
    notice: Callable[[str], None] | None = None,
    dropped: dict[str, int] | None = None,
) -> torch.nn.Module:
    """The network for sd's exact layout (strict: every name and shape), its label set on source."""
    path = source.path
    exact, nearest, diff = matches(sd)
    if not exact:
        raise ModelError(
            f"{path}: unknown weights layout: nearest is {nearest.describe()}, "
            f"but {diff.describe()}"
        )
    if source.name is not None and not any(
        source.name.removeprefix("v") in c.versions for c in exact
    ):
        raise ModelError(
            f"{path}: the cached file of model {source.name} holds {exact[0].describe()}; "
            f"delete it and run: rife models fetch {source.name}"
        )
    if exact[0].layout is None:
        if model_version and model_version.removeprefix("v") not in ("3.6", "3.8"):
            raise ModelError(
                f"--model-version {model_version}: {path} holds a v3.x HD model (v3.6, v3.8)"
            )
        if ensemble:
            raise ModelError(
                "--ensemble is for the 4.x models 4.0-4.20: the v3.x models always run both "
                "frame orders and average them"
            )
        net: torch.nn.Module = IFNetV3()
        version = source.name or (
            f"v{model_version.removeprefix('v')}" if model_version else "v3.x"
        )
    else:
        versions = [v for c in exact for v in c.versions]
        chosen, how = _choose_version(versions, source, model_version)
        if chosen is None:
            # One layout shared by several versions runs identical code: name them all. Two
            # layouts with one key set (v4.0 and v4.1 pad differently): the newer, said so.
            chosen = newest_first(versions)[0]
            if len(exact) > 1 and notice:
                notice(
                    f"{path} holds the tensors of {' and '.join('v' + v for v in versions)} "
                    f"(they pad differently); taken as v{chosen}, --model-version to choose"
                )
        layout = VERSIONS[chosen]
        if how or len(exact) > 1 or len(layout.versions) == 1:
            version = f"v{chosen}"
        else:
            version = "/".join(f"v{v}" for v in layout.versions)
        if ensemble and not layout.ensemble:
            raise ModelError(
                f"--ensemble: {version} (family {layout.family}) has no ensemble in its published "
                "inference; it is for 4.0-4.20 (families A-D)"
            )
        net = IFNetV4x(layout, chosen, ensemble)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # not expected after an exact match; reported, not raised raw
        first = str(exc).strip().splitlines()
        raise ModelError(f"{path}: weights do not fit the {version} network ({first[-1][:160]})")
    if source.name is None:
        source.label = f"{version} (recognised from {source.label})"
        if notice:
            extra = ""
            if dropped:
                parts = ", ".join(f"{k} {n}" for k, n in dropped.items())
                extra = f"; {sum(dropped.values())} training-only tensors dropped ({parts})"
            notice(f"model {source.label}{extra}")
    else:
        record_first_load(source.name, path, notice)
    return net.eval()


def load_network(
    source: ModelSource,
    model_version: str | None = None,
    ensemble: bool = False,
    notice: Callable[[str], None] | None = None,
) -> torch.nn.Module:
    sd, dropped = read_state_dict(source.path)
    return build_network(sd, source, model_version, ensemble, notice, dropped)
