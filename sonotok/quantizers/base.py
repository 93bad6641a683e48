"""The quantizer protocol shared by every quantizer in sonotok.

A quantizer maps a latent ``z: [B, D, T]`` to discrete codes ``[B, K, T]`` (int64, ``K`` codebooks)
and back. Training uses :meth:`Quantizer.forward`, which returns the quantized latent with a
straight-through gradient, the codes, the losses (keys ``vq/...``) and metrics. Inference uses
:meth:`Quantizer.encode` / :meth:`Quantizer.decode`, which run the same code path as the frozen,
TorchScript-able module returned by :meth:`Quantizer.to_frozen`, so eager codes and exported codes
are identical by construction.
"""

from __future__ import annotations

import abc
from typing import Dict, NamedTuple

import torch
from torch import Tensor, nn


class QuantizerOutput(NamedTuple):
    """What :meth:`Quantizer.forward` returns.

    Attributes:
        z_q: quantized latent ``[B, D, T]`` (straight-through gradient to ``z``).
        codes: ``[B, K, T]`` int64; ``-1`` marks codebooks dropped by quantizer dropout in training.
        losses: namespaced losses, e.g. ``{"vq/commit": ...}``.
        metrics: detached scalars for logging, e.g. ``{"vq/perplexity": ...}``.
    """

    z_q: Tensor
    codes: Tensor
    losses: Dict[str, Tensor]
    metrics: Dict[str, Tensor]


def code_perplexity(codes: Tensor, codebook_size: int) -> Tensor:
    """Mean over codebooks of ``exp(entropy)`` of the code histogram in ``codes [B, K, T]``."""
    k = codes.shape[1]
    flat = codes.transpose(0, 1).reshape(k, -1)
    perps = []
    for i in range(k):
        c = flat[i]
        c = c[c >= 0]
        if c.numel() == 0:
            continue
        p = torch.bincount(c, minlength=codebook_size).float() / c.numel()
        ent = -(p * torch.log(p.clamp_min(1e-12))).sum()
        perps.append(ent.exp())
    if not perps:
        return codes.new_zeros((), dtype=torch.float32)
    return torch.stack(perps).mean()


class Quantizer(nn.Module, abc.ABC):
    """Base class: subclasses set ``dim``, ``num_codebooks``, ``codebook_size`` and implement
    :meth:`forward` and :meth:`to_frozen`.

    ``encode``/``decode`` delegate to the frozen module built from the current weights.
    """

    dim: int
    num_codebooks: int
    codebook_size: int

    @abc.abstractmethod
    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z [B, D, T] -> QuantizerOutput``."""

    @abc.abstractmethod
    def to_frozen(self) -> nn.Module:
        """A scriptable module with ``encode``/``decode`` giving this quantizer's codes exactly."""

    def _check_latent(self, z: Tensor) -> None:
        if z.dim() != 3 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects a latent [B, {self.dim}, T], got {list(z.shape)}")

    @torch.no_grad()
    def encode(self, z: Tensor, num_codebooks: int | None = None) -> Tensor:
        """``z [B, D, T] -> codes [B, K, T]`` (int64). ``num_codebooks`` keeps the first K (bitrate)."""
        self._check_latent(z)
        codes = self.to_frozen().encode(z.float())
        if num_codebooks is not None:
            codes = codes[:, : self.check_num_codebooks(num_codebooks)]
        return codes

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K', T] -> z_q [B, D, T]``; ``K' <= K`` decodes a lower bitrate."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got {list(codes.shape)}")
        self.check_num_codebooks(int(codes.shape[1]))
        return self.to_frozen().decode(codes.long())

    def check_num_codebooks(self, k: int) -> int:
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in [1, {self.num_codebooks}], got {k}")
        return k

    def extra_metrics(self, codes: Tensor) -> Dict[str, Tensor]:
        return {"vq/perplexity": code_perplexity(codes.detach(), self.codebook_size)}
