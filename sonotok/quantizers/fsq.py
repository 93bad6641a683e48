"""Finite scalar quantization.

Reference: Mentzer et al., 2023, "Finite Scalar Quantization: VQ-VAE Made Simple". Each of ``d``
projected dimensions is bounded and rounded to a few levels; the code is the mixed-radix index.
No codebook to learn, no dead codes, no commitment loss.
"""

from __future__ import annotations

from typing import Sequence

import torch
import vector_quantize_pytorch as vqp
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer, QuantizerOutput
from sonotok.quantizers.frozen import FrozenFSQ


class FSQ(Quantizer):
    """FSQ with ``num_codebooks`` groups of ``len(levels)`` dimensions (one code row per group).

    Args:
        dim: latent dimension.
        levels: levels per dimension, e.g. ``[8, 5, 5, 5]`` (1000 codes).
        num_codebooks: groups.
    """

    def __init__(self, dim: int, levels: Sequence[int] = (8, 5, 5, 5), num_codebooks: int = 1):
        super().__init__()
        self.dim = dim
        self.levels = list(levels)
        self.num_codebooks = num_codebooks
        self.vq = vqp.FSQ(levels=self.levels, dim=dim, num_codebooks=num_codebooks, keep_num_codebooks_dim=True)
        self.codebook_size = int(self.vq.codebook_size)

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_latent(z)
        z_q, codes = self.vq(z.transpose(1, 2))
        codes = codes.permute(0, 2, 1).long()
        zero = z.new_zeros(())
        return QuantizerOutput(z_q.transpose(1, 2), codes, {"vq/commit": zero}, self.extra_metrics(codes))

    def check_num_codebooks(self, k: int) -> int:
        if k != self.num_codebooks:
            raise ValueError(f"FSQ decodes all {self.num_codebooks} codebooks together; got num_codebooks={k}")
        return k

    def to_frozen(self) -> FrozenFSQ:
        def lin(m: nn.Module) -> tuple[Tensor, Tensor]:
            if isinstance(m, nn.Linear):
                return m.weight.detach(), (m.bias.detach() if m.bias is not None else torch.empty(0))
            return torch.empty(0), torch.empty(0)

        wi, bi = lin(self.vq.project_in)
        wo, bo = lin(self.vq.project_out)
        return FrozenFSQ(torch.tensor(self.levels), self.num_codebooks, wi, bi, wo, bo)
