"""Codecs imported from published checkpoints (EnCodec, DAC, Mimi) as ordinary sonotok models.

``IMPORTERS[name](path, **options)`` reads the released file and returns an
:class:`~sonotok.models.imported.common.Imported` (model, config, meta); ``sonotok import`` writes it as
a model directory that :func:`sonotok.load` and every command accept.
"""

from __future__ import annotations

from typing import Callable, Dict, NoReturn

from sonotok.models.imported.common import Imported


def _encodec_24khz(path, bandwidth: float | None = None, **_) -> Imported:
    from sonotok.models.imported.encodec import read_encodec

    return read_encodec(path, bandwidth=6.0 if bandwidth is None else bandwidth)


def _encodec_48khz(path, **_) -> NoReturn:
    from sonotok.models.imported.encodec import refuse_encodec_48khz

    refuse_encodec_48khz(path)


def _dac(sample_rate: int) -> Callable:
    def run(path, num_codebooks: int | None = None, **_) -> Imported:
        from sonotok.models.imported.dac import read_dac

        return read_dac(path, sample_rate=sample_rate, num_codebooks=num_codebooks)

    return run


def _mimi(path, num_codebooks: int | None = None, **_) -> Imported:
    from sonotok.models.imported.mimi import read_mimi

    return read_mimi(path, num_codebooks=8 if num_codebooks is None else num_codebooks)


IMPORTERS: Dict[str, Callable[..., Imported]] = {
    "encodec_24khz": _encodec_24khz,
    "encodec_48khz": _encodec_48khz,  # refused with the reason (docs/imports.md)
    "dac_16khz": _dac(16000),
    "dac_24khz": _dac(24000),
    "dac_44khz": _dac(44100),
    "mimi": _mimi,
}

__all__ = ["IMPORTERS", "Imported"]
