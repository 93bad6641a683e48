"""Permutation-invariant SI-SNR for source separation (utterance-level PIT).

References: Le Roux et al., 2019, "SDR - half-baked or well done?" (SI-SNR/SI-SDR); Kolbæk et al., 2017,
"Multitalker speech separation with utterance-level permutation invariant training" (uPIT); Luo &
Mesgarani, 2019 (Conv-TasNet trains on negative PIT SI-SNR).

Both SI-SNR and the permutation search are torchmetrics' (``scale_invariant_signal_noise_ratio`` and
``permutation_invariant_training``); nothing is re-implemented here.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor, nn
from torchmetrics.functional.audio import (
    permutation_invariant_training,
    pit_permutate,
    scale_invariant_signal_noise_ratio,
)


def pit_sisnr(est: Tensor, ref: Tensor) -> Tuple[Tensor, Tensor]:
    """Best-permutation SI-SNR per example.

    Args:
        est: estimated sources ``[B, S, T]``.
        ref: reference sources ``[B, S, T]``.

    Returns:
        ``(sisnr [B] in dB averaged over sources, best permutation [B, S])``.
    """
    assert est.shape == ref.shape and est.dim() == 3, (
        f"expected est and ref [B, S, T] of the same shape, got {list(est.shape)} and {list(ref.shape)}")
    return permutation_invariant_training(est, ref, scale_invariant_signal_noise_ratio, mode="speaker-wise",
                                          eval_func="max")


def reorder(est: Tensor, perm: Tensor) -> Tensor:
    """Reorder ``est [B, S, T]`` by the permutations returned from :func:`pit_sisnr`."""
    return pit_permutate(est, perm)


def sisnr_improvement(est: Tensor, ref: Tensor, mix: Tensor) -> Tensor:
    """SI-SNRi per example ``[B]`` (dB): PIT SI-SNR of the estimate minus SI-SNR of the mixture.

    ``mix`` is ``[B, 1, T]`` (or ``[B, T]``), repeated for every source.
    """
    if mix.dim() == 2:
        mix = mix.unsqueeze(1)
    best, _ = pit_sisnr(est, ref)
    base = scale_invariant_signal_noise_ratio(mix.expand_as(ref), ref).mean(-1)
    return best - base


class PITSISNRLoss(nn.Module):
    """Negative PIT SI-SNR: ``{"sep/sisnr": -mean SI-SNR (dB)}`` (lower is better).

    Args:
        clamp_db: optional upper bound on each example's SI-SNR (e.g. 30 dB) so well separated examples
            stop dominating the gradient (``None`` = the plain paper objective).
    """

    def __init__(self, clamp_db: float | None = None):
        super().__init__()
        self.clamp_db = clamp_db

    def forward(self, est: Tensor, ref: Tensor) -> Dict[str, Tensor]:
        best, _ = pit_sisnr(est, ref)
        if self.clamp_db is not None:
            best = torch.clamp(best, max=float(self.clamp_db))
        return {"sep/sisnr": -best.mean()}
