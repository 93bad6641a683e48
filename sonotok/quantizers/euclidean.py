"""Residual VQ over plain codebook tables, with the arithmetic of the released EnCodec and Mimi.

The codecs imported from published checkpoints (:mod:`sonotok.models.imported`) quantize with a
plain nearest-neighbour residual VQ (Zeghidour et al., 2021, "SoundStream"; Défossez et al., 2022,
"EnCodec"; Défossez et al., 2024, "Moshi" for Mimi). Their codes can only be reproduced bit for bit if
the distance is computed by the same expression, so the frozen module offers both:

* ``distance="dot"``: ``-(|x|^2 - 2 x.e + |e|^2)`` and argmax over the flattened batch (EnCodec);
* ``distance="cdist"``: ``torch.cdist(x, e)`` and argmin over the flattened batch (Mimi).

An optional 1x1 input/output projection (Mimi's ``input_proj``/``output_proj``, no bias) maps the
latent to the codebook dimension and back. Several such RVQs can be chained on the same latent
(Mimi's split RVQ: one semantic codebook, then the acoustic ones) with :class:`SplitEuclideanRVQ`.

Training (fine-tuning from an imported checkpoint) uses straight-through gradients with a
commitment loss ``vq/commit`` and a codebook loss ``vq/codebook`` (the codebooks are parameters).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer, QuantizerOutput

_DISTANCES = ("dot", "cdist")


class FrozenEuclideanRVQ(nn.Module):
    """Residual VQ as plain tensors (scriptable).

    Args:
        codebooks: ``[K, C, d]``.
        proj_in: ``[d, D, 1]`` 1x1 convolution weight, or an empty tensor (``d == D``).
        proj_out: ``[D, d, 1]``, or an empty tensor.
        distance: ``"dot"`` or ``"cdist"`` (see the module docstring).
    """

    def __init__(self, codebooks: Tensor, proj_in: Tensor, proj_out: Tensor, distance: str = "dot"):
        super().__init__()
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
        assert codebooks.dim() == 3, f"codebooks must be [K, C, d], got {list(codebooks.shape)}"
        self.register_buffer("codebooks", codebooks.detach().clone().contiguous())
        self.register_buffer("proj_in", proj_in.detach().clone())
        self.register_buffer("proj_out", proj_out.detach().clone())
        # |e|^2 per code [K, 1, C], the same expression as EnCodec's (computed once, not per frame)
        self.register_buffer("codebook_sq", self.codebooks.pow(2).sum(-1).unsqueeze(1))
        self.num_codebooks = int(codebooks.shape[0])
        self.codebook_size = int(codebooks.shape[1])
        self.has_proj = proj_in.numel() > 0
        self.dim = int(proj_in.shape[1]) if self.has_proj else int(codebooks.shape[2])
        self.use_cdist = distance == "cdist"

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.encode(z))

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        """``z [B, D, T] -> codes [B, K, T]`` int64."""
        b, _, t = z.shape
        if t == 0:
            return torch.zeros(b, self.num_codebooks, 0, dtype=torch.long, device=z.device)
        if self.has_proj:
            z = F.conv1d(z, self.proj_in)
        residual = z.transpose(1, 2).reshape(b * t, z.shape[1])
        out: List[Tensor] = []
        for k in range(self.num_codebooks):
            cb = self.codebooks[k]
            if self.use_cdist:
                idx = torch.cdist(residual[None], cb[None], p=2.0)[0].argmin(dim=-1)
            else:
                dist = -(residual.pow(2).sum(1, keepdim=True) - 2 * residual @ cb.t() + self.codebook_sq[k])
                idx = dist.max(dim=-1).indices
            residual = residual - F.embedding(idx, cb)
            out.append(idx.view(b, t))
        return torch.stack(out, dim=1)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K', T] -> z_q [B, D, T]`` with ``K' <= K`` (the first codebooks)."""
        b, k_used, t = codes.shape
        assert k_used <= self.num_codebooks, "more codebooks than the quantizer has"
        acc = torch.zeros(b, t, self.codebooks.shape[-1], device=codes.device, dtype=self.codebooks.dtype)
        if self.has_proj and t == 0:
            return torch.zeros(b, self.proj_out.shape[0], 0, device=codes.device, dtype=self.codebooks.dtype)
        for k in range(k_used):
            acc = acc + F.embedding(codes[:, k], self.codebooks[k])
        y = acc.transpose(1, 2)
        if self.has_proj and t > 0:
            y = F.conv1d(y, self.proj_out)
        return y


class FrozenSplitEuclideanRVQ(nn.Module):
    """Two frozen RVQs on the same latent, codes concatenated (Mimi's split RVQ), scriptable.

    Args:
        first: the RVQ of the first codes (Mimi: 1 semantic codebook).
        rest: the RVQ of the remaining codes.
    """

    def __init__(self, first: FrozenEuclideanRVQ, rest: FrozenEuclideanRVQ):
        super().__init__()
        self.first = first
        self.rest = rest
        self.n_first = int(first.num_codebooks)
        self.num_codebooks = int(first.num_codebooks + rest.num_codebooks)
        self.codebook_size = int(first.codebook_size)
        self.dim = int(first.dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.encode(z))

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        return torch.cat([self.first.encode(z), self.rest.encode(z)], dim=1)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        y = self.first.decode(codes[:, : self.n_first])
        if codes.shape[1] > self.n_first:
            y = y + self.rest.decode(codes[:, self.n_first :])
        return y


class EuclideanRVQ(Quantizer):
    """Residual VQ with plain, learnable codebook tables (imported EnCodec / Mimi quantizers).

    Args:
        dim: latent dimension ``D``.
        num_codebooks: residual levels ``K`` (a lower bitrate keeps fewer at import).
        codebook_size: codes per codebook.
        codebook_dim: code dimension ``d``; when it differs from ``dim`` a bias-free 1x1 projection is
            used on the way in and out (Mimi).
        distance: ``"dot"`` (EnCodec) or ``"cdist"`` (Mimi).
        commitment_weight: weight of ``vq/commit`` when training.
    """

    def __init__(
        self,
        dim: int,
        num_codebooks: int,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        distance: str = "dot",
        commitment_weight: float = 1.0,
    ):
        super().__init__()
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
        d = int(codebook_dim or dim)
        self.dim = int(dim)
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = d
        self.distance = distance
        self.commitment_weight = float(commitment_weight)
        self.codebooks = nn.Parameter(torch.randn(num_codebooks, codebook_size, d))
        if d != dim:
            self.proj_in = nn.Parameter(torch.randn(d, dim, 1) / dim**0.5)
            self.proj_out = nn.Parameter(torch.randn(dim, d, 1) / d**0.5)
        else:
            self.proj_in = None
            self.proj_out = None

    def to_frozen(self) -> FrozenEuclideanRVQ:
        empty = torch.empty(0, device=self.codebooks.device)
        return FrozenEuclideanRVQ(
            self.codebooks.detach(),
            self.proj_in.detach() if self.proj_in is not None else empty,
            self.proj_out.detach() if self.proj_out is not None else empty,
            self.distance,
        )

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Straight-through quantization of ``z [B, D, T]`` with commitment and codebook losses."""
        self._check_latent(z)
        codes = self.to_frozen().encode(z.detach().float())
        x = F.conv1d(z, self.proj_in) if self.proj_in is not None else z
        x = x.transpose(1, 2)
        residual = x
        quantized = torch.zeros_like(x)
        commit = z.new_zeros(())
        codebook = z.new_zeros(())
        for k in range(self.num_codebooks):
            q = F.embedding(codes[:, k], self.codebooks[k])
            commit = commit + F.mse_loss(residual, q.detach())
            codebook = codebook + F.mse_loss(q, residual.detach())
            quantized = quantized + q
            residual = residual - q.detach()
        z_q = x + (quantized - x).detach() + (quantized - quantized.detach())
        z_q = z_q.transpose(1, 2)
        if self.proj_out is not None:
            z_q = F.conv1d(z_q, self.proj_out)
        losses = {"vq/commit": commit * self.commitment_weight, "vq/codebook": codebook}
        return QuantizerOutput(z_q, codes, losses, self.extra_metrics(codes))


class SplitEuclideanRVQ(Quantizer):
    """Two :class:`EuclideanRVQ` on the same latent whose codes are concatenated (Mimi).

    The first ``first.num_codebooks`` code rows come from ``first`` (Mimi's semantic codebook, distilled
    from WavLM), the others from ``rest``; the decoded latent is the sum of both decodes.

    Args:
        first: the quantizer of the first codes.
        rest: the quantizer of the remaining codes.
    """

    def __init__(self, first: EuclideanRVQ, rest: EuclideanRVQ):
        super().__init__()
        if first.dim != rest.dim or first.codebook_size != rest.codebook_size:
            raise ValueError("split RVQ parts must share dim and codebook_size")
        self.first = first
        self.rest = rest
        self.dim = first.dim
        self.num_codebooks = first.num_codebooks + rest.num_codebooks
        self.codebook_size = first.codebook_size

    def to_frozen(self) -> FrozenSplitEuclideanRVQ:
        return FrozenSplitEuclideanRVQ(self.first.to_frozen(), self.rest.to_frozen())

    def forward(self, z: Tensor) -> QuantizerOutput:
        a = self.first(z)
        b = self.rest(z)
        losses = {k: a.losses[k] + b.losses[k] for k in a.losses}
        codes = torch.cat([a.codes, b.codes], dim=1)
        return QuantizerOutput(a.z_q + b.z_q, codes, losses, self.extra_metrics(codes))


def stack_codebooks(tables: Sequence[Tensor]) -> Tensor:
    """``[C, d]`` tables -> ``[K, C, d]`` (helper for importers)."""
    return torch.stack([t.detach().float() for t in tables])
