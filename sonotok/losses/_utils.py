"""Small helpers shared by the loss modules (shape checks, cropping, float32 STFT)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def crop_pair(x: Tensor, y: Tensor, name: str = "loss") -> tuple[Tensor, Tensor]:
    """Checks two audio batches and crops both to the shorter length.

    Decoders often return a few samples more or less than the input (padding to a multiple of the
    hop length), so reconstruction losses compare the common prefix.

    Args:
        x: audio ``[B, C, T1]`` (or ``[B, T1]``, treated as one channel).
        y: audio ``[B, C, T2]`` (or ``[B, T2]``).
        name: the caller, used in error messages.

    Returns:
        ``(x, y)`` both ``[B, C, min(T1, T2)]``.
    """
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if y.dim() == 2:
        y = y.unsqueeze(1)
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"{name}: expected audio [B, C, T], got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"{name}: batch/channel mismatch, got {tuple(x.shape)} and {tuple(y.shape)} ([B, C, T] each)"
        )
    n = min(x.shape[-1], y.shape[-1])
    if n == 0:
        raise ValueError(f"{name}: empty audio, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x[..., :n], y[..., :n]


def no_autocast(device_type: str):
    """A context that disables autocast (STFTs and logs are computed in float32)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # device type without autocast support
        return contextlib.nullcontext()
