"""Codec models."""

from sonotok.codecs.codec import Codec

__all__ = ["Codec"]
