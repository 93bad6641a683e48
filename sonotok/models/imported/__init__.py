"""Codecs imported from published checkpoints (EnCodec, DAC, Mimi) as ordinary sonotok models.

``IMPORTERS[name](path, out, **options)`` reads the released file and writes a model directory that
:func:`sonotok.load` and every command accept; see ``sonotok import --help``.
"""

from __future__ import annotations

from typing import Callable, Dict


def _encodec_24khz(path, out, bandwidth: float | None = None, **_):
    from sonotok.models.imported.encodec import import_encodec

    return import_encodec(path, out, bandwidth=6.0 if bandwidth is None else bandwidth)


def _dac(sample_rate: int) -> Callable:
    def run(path, out, num_codebooks: int | None = None, **_):
        from sonotok.models.imported.dac import import_dac

        return import_dac(path, out, sample_rate=sample_rate, num_codebooks=num_codebooks)

    return run


IMPORTERS: Dict[str, Callable] = {
    "encodec_24khz": _encodec_24khz,
    "dac_16khz": _dac(16000),
    "dac_24khz": _dac(24000),
    "dac_44khz": _dac(44100),
}

__all__ = ["IMPORTERS"]
