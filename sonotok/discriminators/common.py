"""Helpers shared by the discriminators: weight/spectral norm, input checks, conv stacks.

Convention for every discriminator in this package: ``forward(x)`` takes audio ``[B, 1, T]`` and
returns ``(logits, features)`` where ``logits`` is a list with one tensor per sub-discriminator and
``features`` a list (same length) of lists of intermediate feature maps (after each activation), the
inputs of feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

DiscriminatorOutput = tuple[list[Tensor], list[list[Tensor]]]


def normed(module: nn.Module, use_spectral_norm: bool = False) -> nn.Module:
    """Wraps a conv in weight norm (default) or spectral norm (parametrizations API)."""
    return spectral_norm(module) if use_spectral_norm else weight_norm(module)


def check_audio(x: Tensor, name: str) -> Tensor:
    """Checks ``[B, 1, T]`` audio (``[B, T]`` is accepted) and returns it as ``[B, 1, T]`` float."""
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected mono audio [B, 1, T], got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name}: expected floating-point audio, got {x.dtype}")
    return x


def pow_channels(base: int, mult: int, i: int, max_channels: int) -> int:
    """``min(base * mult**i, max_channels)``."""
    return int(min(base * mult**i, max_channels))


def conv_stack(
    x: Tensor, convs: nn.ModuleList, post: nn.Module, negative_slope: float
) -> tuple[Tensor, list[Tensor]]:
    """Runs ``convs`` (each followed by LeakyReLU) then ``post``.

    Returns:
        ``post``'s output (the logits) and the feature maps: each activation's output, then the logits.
    """
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), negative_slope)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x, feats


def score_all(discriminators: nn.ModuleList, x: Tensor) -> DiscriminatorOutput:
    """Scores ``x`` with each sub-discriminator: ``([logits, ...], [features, ...])``."""
    logits, features = [], []
    for d in discriminators:
        lg, ft = d(x)
        logits.append(lg)
        features.append(ft)
    return logits, features
