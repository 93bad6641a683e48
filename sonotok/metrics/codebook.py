"""Codebook usage statistics: utilization, perplexity and entropy-coded bitrate.

Codebook collapse (few entries used) is the classic failure of VQ codecs (van den Oord et al. 2017,
"Neural Discrete Representation Learning"; Zeghidour et al. 2021, "SoundStream"). This metric accumulates
a histogram per codebook over a dataset and reports, per codebook:

- utilization: the fraction of entries that were used at least once;
- perplexity: ``exp(H)`` with ``H`` the entropy (nats) of the empirical code distribution; it equals the
  codebook size for uniform use and 1 when one entry is used;
- entropy (bits): the average bits per code an ideal entropy coder would spend, which gives the
  entropy-coded bitrate ``frame_rate * sum_k H_k``.

It is a :class:`torchmetrics.Metric`, so the histograms are summed across processes under DDP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["CodebookUsage"]


class CodebookUsage(Metric):
    """Per-codebook histograms of discrete codes.

    Args:
        num_codebooks: K, the number of codebooks in the codes given to :meth:`update`.
        codebook_size: V, entries per codebook; codes must lie in ``[0, V)``.

    Example:
        >>> usage = CodebookUsage(num_codebooks=8, codebook_size=1024)
        >>> usage.update(codes)          # codes: LongTensor [B, K, T]
        >>> stats = usage.compute()      # dict of [K] tensors
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, num_codebooks: int, codebook_size: int, **kwargs):
        super().__init__(**kwargs)
        if num_codebooks < 1 or codebook_size < 1:
            raise ValueError(
                f"need num_codebooks >= 1 and codebook_size >= 1, got {num_codebooks}, {codebook_size}"
            )
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(codebook_size)
        self.add_state(
            "counts",
            default=torch.zeros(self.num_codebooks, self.codebook_size, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, codes: Tensor) -> None:
        """Add codes of shape ``[B, K, T]`` (or ``[K, T]``) to the histograms."""
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"codes must be [B, K={self.num_codebooks}, T], got shape {tuple(codes.shape)}")
        if codes.is_floating_point():
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got range [{int(codes.min())}, {int(codes.max())}]"
            )
        k = self.num_codebooks
        flat = codes.transpose(0, 1).reshape(k, -1)  # [K, B*T]
        offsets = torch.arange(k, device=flat.device).unsqueeze(1) * self.codebook_size
        hist = torch.bincount((flat + offsets).reshape(-1), minlength=k * self.codebook_size)
        self.counts += hist.view(k, self.codebook_size).to(self.counts.device)

    def probabilities(self) -> Tensor:
        """Empirical code distribution per codebook, ``[K, V]`` (zeros for an empty codebook)."""
        counts = self.counts.double()
        total = counts.sum(dim=1, keepdim=True)
        return torch.where(total > 0, counts / total.clamp_min(1), torch.zeros_like(counts))

    def compute(self) -> dict[str, Tensor]:
        """Statistics per codebook.

        Returns:
            dict with ``[K]`` float tensors ``utilization`` (fraction of entries used), ``perplexity``
            (``exp`` of the entropy in nats), ``entropy_bits`` (bits per code), and the ``[K]`` long tensor
            ``count`` (codes seen per codebook). As with every torchmetrics metric, one-element results
            are squeezed to 0-dim tensors (``K == 1``); ``.reshape(-1)`` gives ``[K]`` back.
        """
        p = self.probabilities()
        logp = torch.where(p > 0, p.log(), torch.zeros_like(p))
        entropy = -(p * logp).sum(dim=1)  # nats
        return {
            "utilization": (self.counts > 0).double().mean(dim=1).float(),
            "perplexity": entropy.exp().float(),
            "entropy_bits": (entropy / math.log(2)).float(),
            "count": self.counts.sum(dim=1),
        }

    def entropy_bitrate(self, frame_rate: float) -> float:
        """Bits per second an ideal (per-codebook, memoryless) entropy coder would spend."""
        return float(frame_rate) * float(self.compute()["entropy_bits"].sum())
