"""The errors the tool raises on purpose; each message says what went wrong and what to do next."""

from __future__ import annotations


class RifeError(Exception):
    """A failure the CLI reports as one line with exit code 1."""

    exit_code = 1


class UsageError(RifeError):
    """Options that contradict each other or are out of range (exit code 2)."""

    exit_code = 2


class ModelError(RifeError):
    """Weights that are missing, corrupt, of an unknown family, or not cached while offline."""


class InputError(RifeError):
    """An input file or directory that cannot be read as images or video."""


class OutputError(RifeError):
    """An output that cannot be written (exists, parent missing, disk full)."""


class ResourceError(RifeError):
    """Out of memory (host or GPU) for the frame size and batch asked for."""


class Interrupted(RifeError):
    """Stopped by SIGINT (130) or SIGTERM (143). `hard`: a second signal, to quit at once without
    waiting for work in flight."""

    def __init__(self, signum_exit: int = 130, message: str = "interrupted", hard: bool = False):
        super().__init__(message)
        self.exit_code = signum_exit
        self.hard = hard


class PipeClosed(RifeError):
    """Standard output's reader went away (`| head -c`): the run ends, exit code 141 as a shell
    reports a process ended by SIGPIPE."""

    exit_code = 141

    def __init__(self, message: str = "standard output was closed by its reader; stopped"):
        super().__init__(message)
