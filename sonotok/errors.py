"""Exceptions with messages that name the offending file and the problem."""

from __future__ import annotations

import os


class SonotokError(Exception):
    """Base class of every error sonotok raises on purpose."""


class AudioError(SonotokError):
    """A file that cannot be used as audio input.

    Args:
        path: the file.
        reason: a one-line human-readable reason ("empty file", "NaN samples", ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelLoadError(SonotokError):
    """A model directory, checkpoint or artifact that cannot be loaded."""


class CodesError(SonotokError):
    """A code file that does not fit the model (codebooks, range, dtype, model id)."""
