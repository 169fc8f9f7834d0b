"""Turning the INPUT arguments into a list of jobs: files, image directories, folders of videos, globs."""

from __future__ import annotations

import glob
from pathlib import Path

from .video.images import IMAGE_EXTENSIONS, natural_key

VIDEO_EXTENSIONS = (
    ".mp4",
    ".mkv",
    ".mov",
    ".webm",
    ".avi",
    ".m4v",
    ".ts",
    ".mts",
    ".m2ts",
    ".wmv",
    ".flv",
    ".mpg",
    ".mpeg",
    ".3gp",
    ".ogv",
    ".gif",
)


def stands_for_several(arg: Path) -> bool:
    """Whether INPUT `arg` names a batch, however many files it holds: a glob, or a folder of
    videos (not of images, which is one input)."""
    if not arg.exists() and any(ch in str(arg) for ch in "*?["):
        return True
    if not arg.is_dir():
        return False
    entries = [p for p in arg.iterdir() if p.is_file()]
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        return False
    return any(p.suffix.lower() in VIDEO_EXTENSIONS for p in entries)


def expand_inputs(args: list[Path]) -> list[Path]:
    """A directory of images is one input; a directory of videos is its videos; an unquoted or
    quoted glob is its matches. Anything else is kept as given (and fails on its own later)."""
    jobs: list[Path] = []
    for arg in args:
        text = str(arg)
        if not arg.exists() and any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text), key=natural_key)
            jobs += [Path(m) for m in matches] or [arg]
            continue
        if arg.is_dir():
            entries = [p for p in arg.iterdir() if p.is_file()]
            if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
                videos = sorted(
                    (p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS),
                    key=lambda p: natural_key(p.name),
                )
                if videos:
                    jobs += videos
                    continue
        jobs.append(arg)
    return jobs


def printable(text: str) -> str:
    """`text` with control characters (newlines, tabs, escapes, C1 codes) written as Python
    escapes: a file name can hold any of them, and one must not break or restyle a table."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def summary_table(rows: list[tuple[str, str, str]]) -> str:
    """Rows of (input, status, detail) as aligned text, one line each whatever the names hold."""
    rows = [tuple(printable(str(x)) for x in r) for r in rows]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {status:<7}  {detail}" for name, status, detail in rows)
