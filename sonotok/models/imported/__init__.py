"""Codecs imported from published checkpoints (EnCodec, DAC, Mimi) as ordinary sonotok models.

``IMPORTERS[name](path, out, **options)`` reads the released file and writes a model directory that
:func:`sonotok.load` and every command accept; see ``sonotok import --help``.
"""

from __future__ import annotations

from typing import Callable, Dict


def _encodec_24khz(path, out, bandwidth: float | None = None, **_):
    from sonotok.models.imported.encodec import import_encodec

    return import_encodec(path, out, bandwidth=6.0 if bandwidth is None else bandwidth)


IMPORTERS: Dict[str, Callable] = {
    "encodec_24khz": _encodec_24khz,
}

__all__ = ["IMPORTERS"]
