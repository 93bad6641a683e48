"""Semantic distillation loss (``sem/distill``): a codec's prediction vs a frozen teacher's features.

References:
    Zhang et al., 2024, "SpeechTokenizer" (``-log sigmoid(cos)`` per frame, summed over feature dims).
    Défossez et al., 2024, "Moshi" (Mimi: cosine distance to WavLM). Ye et al., 2025, "X-Codec" (MSE).
"""

from __future__ import annotations

from typing import Dict

import torch.nn.functional as F
from torch import Tensor, nn

KINDS = ("cosine", "logsigmoid_cosine", "mse", "l1")


class SemanticDistillLoss(nn.Module):
    """``(pred [B, D, F], target [B, D, F]) -> {"sem/distill": scalar}``.

    Args:
        kind: ``"cosine"`` (mean ``1 - cos`` over frames, Mimi), ``"logsigmoid_cosine"`` (mean
            ``-log sigmoid(cos)``, SpeechTokenizer's "D-axis" loss), ``"mse"`` or ``"l1"`` (X-Codec's
            semantic reconstruction).
    """

    def __init__(self, kind: str = "cosine"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind

    def forward(self, pred: Tensor, target: Tensor) -> Dict[str, Tensor]:
        if pred.dim() != 3 or pred.shape[:2] != target.shape[:2]:
            raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must be [B, D, F]")
        n = min(pred.shape[-1], target.shape[-1])
        pred, target = pred[..., :n].float(), target[..., :n].detach().float()
        if self.kind == "mse":
            loss = F.mse_loss(pred, target)
        elif self.kind == "l1":
            loss = F.l1_loss(pred, target)
        else:
            cos = F.cosine_similarity(pred, target, dim=1, eps=1e-6)
            loss = (1 - cos).mean() if self.kind == "cosine" else -F.logsigmoid(cos).mean()
        return {"sem/distill": loss}
