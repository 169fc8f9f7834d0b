"""The oldest torch rife runs on, checked once at import, and the names that moved since then."""

from __future__ import annotations

import re

import torch

from .errors import RifeError

# pyproject's `torch>=` floor. 2.4 is the first with per-device autocast queries
# (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype) and torch.compiler.is_compiling
# (2.3); scripts/floor_check.sh runs the fast tests on exactly this version.
TORCH_FLOOR = (2, 4)


class TorchTooOld(RifeError):
    """The installed torch is older than TORCH_FLOOR."""


def torch_version(text: str | None = None) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.4.1+cu121' or '2.6.0a0+git1234'."""
    m = re.match(r"(\d+)\.(\d+)", text if text is not None else torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_torch(text: str | None = None) -> None:
    """One clear line instead of an AttributeError deep in a forward on an older torch (a
    `pip install --no-deps`, or an image whose torch pip was told to keep)."""
    have = torch_version(text)
    if have < TORCH_FLOOR:
        floor = ".".join(map(str, TORCH_FLOOR))
        raise TorchTooOld(
            f"torch {text or torch.__version__} is older than {floor}, the oldest rife runs on; "
            f"run: pip install 'torch>={floor}'"
        )


check_torch()

# torch.OutOfMemoryError is 2.5+; torch.cuda.OutOfMemoryError (the same class there) is older.
OutOfMemoryError: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
