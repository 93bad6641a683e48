"""Codec models."""

from sonotok.models.codec import Codec

__all__ = ["Codec"]
