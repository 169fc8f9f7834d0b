"""Image files through OpenCV: PNG (8/16-bit), JPEG, TIFF, EXR (float); BGR(A) or grayscale arrays."""

from __future__ import annotations

import os

# OpenCV reads EXR only when this is set before the module is imported.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import re
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, OutputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")


def read_image(path: Path) -> np.ndarray:
    """HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA) array, uint8 / uint16 / float32, as stored."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable image (PNG, JPEG, TIFF or EXR)")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f"{path}: unsupported sample type {img.dtype} (8/16-bit or float32 only)")
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise InputError(f"{path}: {img.shape[2]} channels; expected 1, 3 or 4")
    return img


def write_image(path: Path, img: np.ndarray) -> None:
    """Write via a temporary name beside the target, renamed when complete."""
    ext = path.suffix.lower()
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise OutputError(f"{path}: OpenCV cannot encode a {img.dtype} image as {ext}")
    tmp = path.with_name(f".{path.name}.part")
    try:
        # not ndarray.tofile: it leaves a failed write (a full disk) unsaid, and a short file
        # would be renamed into place as a frame
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of a directory in natural order (2 before 10)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


def missing_numbers(files: list[Path]) -> list[int]:
    """Frame numbers missing from a numbered sequence (img_0001.png ... img_0010.png without
    img_0006.png: [6]), where every name is one pattern with its last number counting; [] where
    the names follow no such pattern (they are then simply taken in order)."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", p.name) for p in files]
    if len(files) < 2 or not all(parts) or len({(m[1], m[3]) for m in parts}) != 1:
        return []
    numbers = sorted(int(m[2]) for m in parts)
    have = set(numbers)
    return [n for n in range(numbers[0], numbers[-1] + 1) if n not in have]


def split_alpha(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if img.ndim == 3 and img.shape[2] == 4:
        return img[:, :, :3], img[:, :, 3]
    return img, None


def blend_alpha(a0: np.ndarray, a1: np.ndarray, t: float) -> np.ndarray:
    """Alpha between two frames: a linear blend at the same t as the colour."""
    mixed = a0.astype(np.float64) * (1 - t) + a1.astype(np.float64) * t
    if a0.dtype == np.float32:
        return mixed.astype(np.float32)
    return np.rint(mixed).astype(a0.dtype)


def merge(color: np.ndarray, alpha: np.ndarray | None, gray: bool) -> np.ndarray:
    """Back to the source layout: grayscale as one channel, alpha appended."""
    if gray:
        return cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)
    if alpha is not None:
        return np.dstack([color, alpha])
    return color


def as_bgr(img: np.ndarray) -> np.ndarray:
    """3-channel uint8/uint16 for a video encoder: gray expanded, alpha dropped, float to 16-bit."""
    if img.dtype == np.float32:
        img = (np.clip(img, 0, 1) * 65535 + 0.5).astype(np.uint16)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    return img
