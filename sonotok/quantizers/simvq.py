"""SimVQ: a frozen random codebook re-parameterised by one learned linear map.

Reference: Zhu et al., 2024, "Addressing Representation Collapse in Vector Quantized Models with One
Linear Layer" (SimVQ). Optimising the shared linear map moves the whole codebook at once, which keeps
nearly every code in use where plain VQ with a large codebook collapses to a few codes.
"""

from __future__ import annotations

import torch
import vector_quantize_pytorch as vqp
from torch import Tensor

from sonotok.quantizers.base import Quantizer, QuantizerOutput
from sonotok.quantizers.frozen import FrozenVQ


class ResidualSimVQ(Quantizer):
    """Residual SimVQ (``num_codebooks = 1`` gives single-codebook SimVQ).

    Args:
        dim: latent dimension.
        num_codebooks: residual stages.
        codebook_size: codes per codebook.
        rotation_trick: rotation-trick gradients (library default, recommended by its author).
        commitment_weight: weight of the commitment loss (``vq/commit``).
        input_to_quantize_commit_loss_weight: weight of the input-to-code term of the commitment loss.
        quantizer_dropout: variable bitrate training.
        quantizer_dropout_cutoff: minimum stages kept minus one.
    """

    def __init__(
        self,
        dim: int,
        num_codebooks: int = 1,
        codebook_size: int = 4096,
        rotation_trick: bool = True,
        commitment_weight: float = 1.0,
        input_to_quantize_commit_loss_weight: float = 0.25,
        quantizer_dropout: bool = False,
        quantizer_dropout_cutoff: int = 0,
    ):
        super().__init__()
        self.dim = dim
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        kw = dict(
            commitment_weight=commitment_weight,
            input_to_quantize_commit_loss_weight=input_to_quantize_commit_loss_weight,
        )
        self.vq = vqp.ResidualSimVQ(
            dim=dim,
            num_quantizers=num_codebooks,
            codebook_size=codebook_size,
            rotation_trick=rotation_trick,
            quantize_dropout=quantizer_dropout,
            quantize_dropout_cutoff_index=quantizer_dropout_cutoff,
            **kw,
        )

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_latent(z)
        z_q, codes, commit = self.vq(z.transpose(1, 2))
        codes = codes.transpose(1, 2).long()
        losses = {"vq/commit": commit.sum()}
        metrics = self.extra_metrics(codes)
        return QuantizerOutput(z_q.transpose(1, 2), codes, losses, metrics)

    def to_frozen(self) -> FrozenVQ:
        with torch.no_grad():
            cbs = torch.stack([layer.codebook for layer in self.vq.layers]).unsqueeze(0)
        e = torch.empty(0)
        return FrozenVQ(cbs, e, e, e, e, distance="cdist")
