"""Bitrate and token-rate arithmetic of a discrete codec.

A codec emitting ``num_codebooks`` codes per frame, each from a codebook of ``codebook_size`` entries,
at ``frame_rate`` frames per second spends ``frame_rate * K * log2(V)`` bits per second.
"""

from __future__ import annotations

import math

__all__ = ["bitrate", "tokens_per_second", "codec_bitrate"]


def bitrate(frame_rate: float, num_codebooks: int, codebook_size: int) -> float:
    """Nominal bitrate in bits per second (fixed-length coding of every code).

    Args:
        frame_rate: code frames per second.
        num_codebooks: codebooks used per frame (K).
        codebook_size: entries per codebook (V).

    Returns:
        ``frame_rate * num_codebooks * log2(codebook_size)`` bits/s.
    """
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    return float(frame_rate) * int(num_codebooks) * math.log2(int(codebook_size))


def tokens_per_second(frame_rate: float, num_codebooks: int) -> float:
    """Discrete tokens per second of audio (``frame_rate * num_codebooks``)."""
    return float(frame_rate) * int(num_codebooks)


def codec_bitrate(codec, num_codebooks: int | None = None) -> float:
    """Bits per second of a codec, from its ``bitrate()`` method when it has one.

    Args:
        codec: a module with ``frame_rate``, ``num_codebooks``, ``codebook_size``
            (and optionally ``bitrate(num_codebooks=None)``, as :class:`sonotok.models.Codec` has).
        num_codebooks: the number of codebooks actually used; ``None`` means all.
    """
    k = int(num_codebooks if num_codebooks is not None else codec.num_codebooks)
    method = getattr(codec, "bitrate", None)
    if callable(method):
        return float(method(num_codebooks=k))
    return bitrate(codec.frame_rate, k, codec.codebook_size)
