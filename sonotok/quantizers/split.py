"""Mimi's split residual VQ: a semantic and an acoustic quantizer over the same latent, outputs summed.

Reference:
    Défossez et al., 2024, "Moshi: a speech-text foundation model for real-time dialogue" (Mimi: split
    RVQ, a separate semantic VQ distilled from WavLM, streaming).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer, QuantizerOutput, code_perplexity
from sonotok.quantizers.frozen import FrozenVQ


class FrozenSplitVQ(nn.Module):
    """Scriptable twin of :class:`SplitResidualVQ`: codes = ``[semantic rows; acoustic rows]``."""

    def __init__(self, semantic: FrozenVQ, acoustic: FrozenVQ):
        super().__init__()
        self.semantic = semantic
        self.acoustic = acoustic
        self.n_semantic = int(semantic.num_codebooks)
        self.num_codebooks = self.n_semantic + int(acoustic.num_codebooks)
        self.codebook_size = int(semantic.codebook_size)
        self.dim = int(semantic.dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.encode(z))

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        return torch.cat([self.semantic.encode(z), self.acoustic.encode(z)], dim=1)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        out = self.semantic.decode(codes[:, : min(self.n_semantic, codes.shape[1])])
        if codes.shape[1] > self.n_semantic:
            out = out + self.acoustic.decode(codes[:, self.n_semantic:])
        return out


class SplitResidualVQ(Quantizer):
    """Mimi's split RVQ: a semantic RVQ and an acoustic RVQ quantize the same latent in parallel and
    their outputs are summed. Codes are ``[semantic levels; acoustic levels]``; the semantic part's
    output (with straight-through gradient) is exposed as :attr:`semantic_output` after each forward
    for first-codebook distillation.

    Args:
        semantic: the semantic quantizer (usually one codebook).
        acoustic: the acoustic residual quantizer.
    """

    def __init__(self, semantic: Quantizer, acoustic: Quantizer):
        super().__init__()
        if semantic.dim != acoustic.dim or semantic.codebook_size != acoustic.codebook_size:
            raise ValueError("semantic and acoustic quantizers need the same dim and codebook_size, got "
                             f"{semantic.dim}/{semantic.codebook_size} and {acoustic.dim}/{acoustic.codebook_size}")
        self.semantic = semantic
        self.acoustic = acoustic
        self.dim = semantic.dim
        self.codebook_size = semantic.codebook_size
        self.num_codebooks = semantic.num_codebooks + acoustic.num_codebooks
        self.semantic_output: Optional[Tensor] = None

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_latent(z)
        s = self.semantic(z)
        a = self.acoustic(z)
        self.semantic_output = s.z_q
        losses = {k: s.losses.get(k, 0) + a.losses.get(k, 0) for k in set(s.losses) | set(a.losses)}
        codes = torch.cat([s.codes, a.codes], dim=1)
        metrics = {"vq/perplexity": code_perplexity(codes.detach(), self.codebook_size),
                   "vq/semantic_perplexity": code_perplexity(s.codes.detach(), self.codebook_size)}
        return QuantizerOutput(s.z_q + a.z_q, codes, losses, metrics)

    def to_frozen(self) -> FrozenSplitVQ:
        return FrozenSplitVQ(self.semantic.to_frozen(), self.acoustic.to_frozen())
