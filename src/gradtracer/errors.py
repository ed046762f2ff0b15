"""Exception and warning classes shared by every GradTracer module."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DataFormatError",
    "GradTracerWarning",
    "MissingExtraError",
    "TrackerError",
]


class GradTracerWarning(UserWarning):
    """Base class of every warning GradTracer emits (filter on it to silence them all)."""


class DataFormatError(ValueError):
    """Malformed input data: names the file, the 1-based line number and what was expected.

    Args:
        path: file that was being read (``None`` for in-memory frames).
        line: 1-based line number of the offending record, ``None`` when not line-based.
        message: what was wrong and what was expected.
    """

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = self.path or "<data>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class TrackerError(RuntimeError):
    """Misuse of a tracker (for example two trackers attached to one layer)."""
