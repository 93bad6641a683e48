"""Factorized, L2-normalised residual VQ (DAC's quantizer).

Reference: Kumar et al., 2023, "High-Fidelity Audio Compression with Improved RVQGAN" (DAC), after
Yu et al., 2022, "Vector-quantized Image Modeling with Improved VQGAN" (factorized, l2-normalised codes).

Each level projects the residual to a low-dimensional space (a weight-normalised 1x1 convolution,
``D -> d``, ``d = 8`` in DAC), looks up the nearest code by cosine similarity (both sides L2-normalised),
and projects the *unnormalised* code back (``d -> D``). The next level quantizes what is left.

:class:`FrozenFactorizedRVQ` repeats the reference's expressions (including the straight-through sum
``z_e + (z_q - z_e)`` that feeds the residual), so its codes are the reference's bit for bit.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from sonotok.quantizers.base import Quantizer, QuantizerOutput


class FrozenFactorizedRVQ(nn.Module):
    """Factorized residual VQ as plain tensors (scriptable).

    Args:
        in_w: ``[K, d, D]`` input projections (weight norm folded); in_b: ``[K, d]``.
        out_w: ``[K, D, d]`` output projections; out_b: ``[K, D]``.
        codebooks: ``[K, C, d]`` (unnormalised, as decoded).
    """

    def __init__(self, in_w: Tensor, in_b: Tensor, out_w: Tensor, out_b: Tensor, codebooks: Tensor):
        super().__init__()
        self.register_buffer("in_w", in_w.detach().clone().unsqueeze(-1).contiguous())
        self.register_buffer("in_b", in_b.detach().clone().contiguous())
        self.register_buffer("out_w", out_w.detach().clone().unsqueeze(-1).contiguous())
        self.register_buffer("out_b", out_b.detach().clone().contiguous())
        self.register_buffer("codebooks", codebooks.detach().clone().contiguous())
        normed = F.normalize(self.codebooks, dim=-1)
        self.register_buffer("normed", normed)
        self.register_buffer("normed_sq", normed.pow(2).sum(-1).unsqueeze(1))  # [K, 1, C]
        self.num_codebooks = int(codebooks.shape[0])
        self.codebook_size = int(codebooks.shape[1])
        self.dim = int(in_w.shape[2])

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.encode(z))

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        """``z [B, D, T] -> codes [B, K, T]`` int64."""
        b, _, t = z.shape
        residual = z
        out: List[Tensor] = []
        for k in range(self.num_codebooks):
            z_e = F.conv1d(residual, self.in_w[k], self.in_b[k])  # [B, d, T]
            enc = F.normalize(z_e.transpose(1, 2).reshape(b * t, z_e.shape[1]))
            dist = enc.pow(2).sum(1, keepdim=True) - 2 * enc @ self.normed[k].t() + self.normed_sq[k]
            idx = (-dist).max(1).indices.view(b, t)
            z_q = F.embedding(idx, self.codebooks[k]).transpose(1, 2)
            z_q = F.conv1d(z_e + (z_q - z_e), self.out_w[k], self.out_b[k])
            residual = residual - z_q
            out.append(idx)
        return torch.stack(out, dim=1)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K', T] -> z_q [B, D, T]`` (``K' <= K``, the first codebooks)."""
        b, k_used, t = codes.shape
        assert k_used <= self.num_codebooks, "more codebooks than the quantizer has"
        y = torch.zeros(b, self.out_w.shape[1], t, device=codes.device, dtype=self.out_w.dtype)
        for k in range(k_used):
            z_p = F.embedding(codes[:, k], self.codebooks[k]).transpose(1, 2)
            y = y + F.conv1d(z_p, self.out_w[k], self.out_b[k])
        return y


class _FactorizedLevel(nn.Module):
    """One level: weight-normalised ``in_proj``/``out_proj`` (1x1 convs) and a codebook table."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = parametrizations.weight_norm(nn.Conv1d(dim, codebook_dim, 1))
        self.out_proj = parametrizations.weight_norm(nn.Conv1d(codebook_dim, dim, 1))
        self.codebook = nn.Embedding(codebook_size, codebook_dim)


class FactorizedRVQ(Quantizer):
    """DAC's residual VQ with factorized, L2-normalised codebooks.

    Args:
        dim: latent dimension ``D``.
        num_codebooks: levels ``K``.
        codebook_size: codes per level.
        codebook_dim: dimension of the lookup space ``d``.
    """

    def __init__(self, dim: int, num_codebooks: int = 9, codebook_size: int = 1024, codebook_dim: int = 8):
        super().__init__()
        self.dim = int(dim)
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.quantizers = nn.ModuleList(
            [_FactorizedLevel(dim, codebook_size, codebook_dim) for _ in range(num_codebooks)]
        )

    def to_frozen(self) -> FrozenFactorizedRVQ:
        q = self.quantizers
        return FrozenFactorizedRVQ(
            torch.stack([lv.in_proj.weight.detach()[..., 0] for lv in q]),
            torch.stack([lv.in_proj.bias.detach() for lv in q]),
            torch.stack([lv.out_proj.weight.detach()[..., 0] for lv in q]),
            torch.stack([lv.out_proj.bias.detach() for lv in q]),
            torch.stack([lv.codebook.weight.detach() for lv in q]),
        )

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Training pass: straight-through codes, DAC's commitment and codebook losses."""
        self._check_latent(z)
        residual = z
        z_q = torch.zeros_like(z)
        commit = z.new_zeros(())
        codebook = z.new_zeros(())
        codes = []
        for lv in self.quantizers:
            z_e = lv.in_proj(residual)
            b, d, t = z_e.shape
            enc = F.normalize(z_e.detach().transpose(1, 2).reshape(b * t, d))
            cb = F.normalize(lv.codebook.weight.detach())
            idx = (enc @ cb.t()).argmax(-1).view(b, t)
            q = lv.codebook(idx).transpose(1, 2)
            commit = commit + F.mse_loss(z_e, q.detach())
            codebook = codebook + F.mse_loss(q, z_e.detach())
            q_i = lv.out_proj(z_e + (q - z_e).detach())
            z_q = z_q + q_i
            residual = residual - q_i
            codes.append(idx)
        codes_t = torch.stack(codes, dim=1)
        losses = {"vq/commit": commit, "vq/codebook": codebook}
        return QuantizerOutput(z_q, codes_t, losses, self.extra_metrics(codes_t))
