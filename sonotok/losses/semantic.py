"""Semantic distillation losses: a codec's prediction vs a frozen teacher's features.

``sem/distill`` (one speech teacher: X-Codec, first-codebook) and DM-Codec's ``sem/lm`` (LM-guided: a text
teacher's token embeddings aligned to the frames) and ``sem/sm`` (SM-guided: a speech teacher), combined
by giving both a weight (:class:`MultimodalDistillLoss`).

References:
    Zhang et al., 2024, "SpeechTokenizer" (``-log sigmoid(cos)``; its "D-axis" loss takes the cosine along
    time for each feature dimension).
    Défossez et al., 2024, "Moshi" (Mimi: cosine distance to WavLM). Ye et al., 2025, "X-Codec" (MSE).
    Ahasan et al., 2024, "DM-Codec" (LM- and SM-guided distillation with SpeechTokenizer's D-axis loss).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINDS = ("cosine", "logsigmoid_cosine", "d_axis", "mse", "l1")


class SemanticDistillLoss(nn.Module):
    """``(pred [B, D, F], target [B, D, F], mask [B, F] optional) -> {key: scalar}``.

    Args:
        kind: ``"cosine"`` (mean ``1 - cos`` over frames, cosine over the feature axis; Mimi),
            ``"logsigmoid_cosine"`` (mean ``-log sigmoid(cos)`` over frames), ``"d_axis"``
            (SpeechTokenizer / DM-Codec: for each feature dimension the cosine of the prediction's and the
            target's time series, ``-log sigmoid(cos)`` averaged over dimensions and items), ``"mse"`` or
            ``"l1"`` (X-Codec's semantic reconstruction).
        key: the loss's name in the returned dict and in ``loss.weights`` (``sem/distill``, ``sem/lm``,
            ``sem/sm``).
        center: first subtract each item's per-dimension mean over its (valid) frames from prediction and
            target, so only what varies in time counts (``d_axis`` becomes a per-dimension correlation). Without
            it, the cosine kinds are largely met by predicting the teacher's per-dimension means: on a tiny run
            the uncentred D-axis loss fell to near its minimum while a probe from the codes got worse
            (tests/semantic/test_dmcodec.py).

    A ``mask`` (true = frame has a target) restricts every kind to the valid frames; items without a valid
    frame do not count (a batch with none gives 0 with a gradient path, so the step still runs).
    """

    def __init__(self, kind: str = "cosine", key: str = "sem/distill", center: bool = False):
        super().__init__()
        self.center = bool(center)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not key.startswith("sem/"):
            raise ValueError(f"semantic loss keys live under sem/, got {key!r}")
        self.kind = kind
        self.key = key

    def forward(self, pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        if pred.dim() != 3 or pred.shape[:2] != target.shape[:2]:
            raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must be [B, D, F]")
        n = min(pred.shape[-1], target.shape[-1])
        pred, target = pred[..., :n].float(), target[..., :n].detach().float()
        if mask is None:
            m = torch.ones(pred.shape[0], n, dtype=pred.dtype, device=pred.device)
        else:
            if mask.dim() != 2 or mask.shape[0] != pred.shape[0]:
                raise ValueError(f"mask {list(mask.shape)} must be [B, F] for pred {list(pred.shape)}")
            m = mask[:, :n].to(device=pred.device, dtype=pred.dtype)
        valid = m.sum()
        if float(valid) == 0:
            return {self.key: pred.sum() * 0.0}
        if self.center:  # remove each item's per-dimension mean over its valid frames
            cnt = m.sum(1).clamp_min(1.0)[:, None, None]
            pred = (pred - (pred * m[:, None]).sum(-1, keepdim=True) / cnt) * m[:, None]
            target = (target - (target * m[:, None]).sum(-1, keepdim=True) / cnt) * m[:, None]
        if self.kind in ("mse", "l1"):
            err = (pred - target) ** 2 if self.kind == "mse" else (pred - target).abs()
            loss = (err * m[:, None]).sum() / (valid * pred.shape[1])
        elif self.kind == "d_axis":
            cos = F.cosine_similarity(pred * m[:, None], target * m[:, None], dim=2, eps=1e-6)  # [B, D]
            items = (m.sum(1) > 0).to(pred.dtype)
            loss = (-F.logsigmoid(cos).mean(1) * items).sum() / items.sum()
        else:
            cos = F.cosine_similarity(pred, target, dim=1, eps=1e-6)  # [B, F]
            per = (1 - cos) if self.kind == "cosine" else -F.logsigmoid(cos)
            loss = (per * m).sum() / valid
        return {self.key: loss}


class MultimodalDistillLoss(nn.Module):
    """DM-Codec's distillation: LM-guided (``sem/lm``), SM-guided (``sem/sm``), or both combined (each with its
    weight in ``loss.weights``).

    ``forward(preds, targets, masks)`` with dicts keyed ``"lm"`` / ``"sm"`` (a key missing from ``preds`` is
    skipped) -> ``{"sem/lm": ..., "sem/sm": ...}``.

    Args:
        lm: loss of the text-teacher head (default centred ``d_axis`` with key ``sem/lm``).
        sm: loss of the speech-teacher head (default centred ``d_axis`` with key ``sem/sm``).
    """

    def __init__(self, lm: Optional[SemanticDistillLoss] = None, sm: Optional[SemanticDistillLoss] = None):
        super().__init__()
        self.lm = lm if lm is not None else SemanticDistillLoss("d_axis", key="sem/lm", center=True)
        self.sm = sm if sm is not None else SemanticDistillLoss("d_axis", key="sem/sm", center=True)
        if self.lm.key == self.sm.key:
            raise ValueError(f"the LM and SM losses need different keys, both are {self.lm.key!r}")

    def forward(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                masks: Optional[Mapping[str, Optional[Tensor]]] = None) -> Dict[str, Tensor]:
        masks = masks or {}
        out: Dict[str, Tensor] = {}
        for name, loss in (("lm", self.lm), ("sm", self.sm)):
            if name in preds:
                if name not in targets:
                    raise ValueError(f"a {name} prediction without a {name} target")
                out.update(loss(preds[name], targets[name], masks.get(name)))
        return out
