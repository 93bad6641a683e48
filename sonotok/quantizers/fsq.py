"""Finite scalar quantization.

Reference: Mentzer et al., 2023, "Finite Scalar Quantization: VQ-VAE Made Simple". Each of ``d``
projected dimensions is bounded and rounded to a few levels; the code is the mixed-radix index.
No codebook to learn, no dead codes, no commitment loss.

Variable bitrate (group tail dropout): the FSQ analogue of SoundStream's quantizer dropout
(Zeghidour et al., 2021). In training, a fraction ``group_dropout`` of the batch items keep only their
first ``k`` groups (``k`` uniform in ``[min_groups, num_codebooks]``); the quantized values of the other
groups are zeroed before the output projection and their codes are ``-1``. At inference the first ``k``
code rows are a lower bitrate, and decoding treats missing (or ``-1``) groups as zeros, exactly as in
training, so one model serves every ``k``.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
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
        group_dropout: probability that a training batch item keeps only its first ``k`` groups
            (``k`` uniform in ``[min_groups, num_codebooks]``, drawn per item as in DAC's quantizer
            dropout: every batch mixes bitrates, so every step trains every ``k``). ``0`` (default)
            disables it and gives the plain FSQ forward.
        min_groups: the fewest groups a dropped item keeps (the lowest bitrate trained).
    """

    def __init__(
        self,
        dim: int,
        levels: Sequence[int] = (8, 5, 5, 5),
        num_codebooks: int = 1,
        group_dropout: float = 0.0,
        min_groups: int = 1,
    ):
        super().__init__()
        if not 0.0 <= float(group_dropout) <= 1.0:
            raise ValueError(f"FSQ group_dropout must be a probability in [0, 1], got {group_dropout}")
        if not 1 <= int(min_groups) <= int(num_codebooks):
            raise ValueError(f"FSQ min_groups must be in [1, num_codebooks={num_codebooks}], got {min_groups}")
        self.dim = dim
        self.levels = list(levels)
        self.num_codebooks = num_codebooks
        self.group_dropout = float(group_dropout)
        self.min_groups = int(min_groups)
        self.vq = vqp.FSQ(levels=self.levels, dim=dim, num_codebooks=num_codebooks, keep_num_codebooks_dim=True)
        self.codebook_size = int(self.vq.codebook_size)

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_latent(z)
        x = z.transpose(1, 2)
        if self.training and self.group_dropout > 0 and self.min_groups < self.num_codebooks:
            z_q, codes = self._forward_group_dropout(x)
        else:
            z_q, codes = self.vq(x)
        codes = codes.permute(0, 2, 1).long()
        zero = z.new_zeros(())
        metrics = self.extra_metrics(codes)
        if self.training and self.group_dropout > 0:
            metrics["vq/groups_kept"] = (codes[:, :, 0] >= 0).sum(1).float().mean().detach()
        return QuantizerOutput(z_q.transpose(1, 2), codes, {"vq/commit": zero}, metrics)

    def draw_kept_groups(self, batch: int, device: torch.device) -> Tensor:
        """Groups each training item keeps, ``[batch]`` int64: ``num_codebooks`` with probability
        ``1 - group_dropout``, else uniform in ``[min_groups, num_codebooks]``."""
        k_full = torch.full((batch,), self.num_codebooks, dtype=torch.long, device=device)
        k_drop = torch.randint(self.min_groups, self.num_codebooks + 1, (batch,), device=device)
        dropped = torch.rand(batch, device=device) < self.group_dropout
        return torch.where(dropped, k_drop, k_full)

    def _forward_group_dropout(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """vector-quantize-pytorch's FSQ forward (``project_in`` -> ``quantize`` (bound + straight-through
        round) -> ``codes_to_indices`` -> ``project_out``, float32 quantization as the library forces it)
        with the groups past each item's ``k`` zeroed before ``project_out`` and their codes set to -1."""
        vq = self.vq
        b, t, _ = x.shape
        h = vq.project_in(x).reshape(b, t, self.num_codebooks, vq.codebook_dim)
        ctx = partial(torch.autocast, "cuda", enabled=False) if vq.force_quantization_f32 else nullcontext
        with ctx():
            orig_dtype = h.dtype
            if vq.force_quantization_f32 and orig_dtype not in vq.allowed_dtypes:
                h = h.float()
            q = vq.quantize(h)  # [B, T, K, d], straight-through gradient
            idx = vq.codes_to_indices(q).long()  # [B, T, K]
            k = self.draw_kept_groups(b, x.device)
            keep = torch.arange(self.num_codebooks, device=x.device)[None] < k[:, None]  # [B, K]
            q = q * keep[:, None, :, None].to(q.dtype)
            idx = idx.masked_fill(~keep[:, None, :], -1)
            q = q.reshape(b, t, self.num_codebooks * vq.codebook_dim).to(orig_dtype)
        return vq.project_out(q), idx

    def to_frozen(self) -> FrozenFSQ:
        def lin(m: nn.Module) -> tuple[Tensor, Tensor]:
            if isinstance(m, nn.Linear):
                return m.weight.detach(), (m.bias.detach() if m.bias is not None else torch.empty(0))
            return torch.empty(0), torch.empty(0)

        wi, bi = lin(self.vq.project_in)
        wo, bo = lin(self.vq.project_out)
        return FrozenFSQ(torch.tensor(self.levels), self.num_codebooks, wi, bi, wo, bo)
