"""Linear probes: how much of a teacher's features (or of frame labels such as phones) a frozen
representation of the codes can predict linearly. A semantic score that needs no model hub.

The probe is closed-form ridge regression on standardised inputs, fitted on one set of frames and
scored on another (different files), as in SUPERB-style probing.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _fit_ridge(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mu) / sd
    xs = torch.cat([xs, torch.ones(xs.shape[0], 1, dtype=xs.dtype)], 1)
    reg = alpha * torch.eye(xs.shape[1], dtype=xs.dtype)
    reg[-1, -1] = 0.0
    w = torch.linalg.solve(xs.T @ xs + reg, xs.T @ y)
    return mu, sd, w, xs


def _apply(x: Tensor, mu: Tensor, sd: Tensor, w: Tensor) -> Tensor:
    xs = (x - mu) / sd
    return torch.cat([xs, torch.ones(xs.shape[0], 1, dtype=xs.dtype)], 1) @ w


def linear_probe(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 alpha: float = 1.0) -> Dict[str, float]:
    """Ridge regression from frame representations ``x [N, Din]`` to targets ``y [N, Dout]``.

    Returns:
        ``r2`` (test variance explained, averaged over output dims: 1 is perfect, 0 is the mean
        predictor), ``cosine`` (mean per-frame cosine similarity of prediction and target) and ``n_train``
        / ``n_test``.
    """
    if x_train.dim() != 2 or y_train.dim() != 2 or x_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"x_train {list(x_train.shape)} and y_train {list(y_train.shape)} must be [N, D] with equal N")
    if x_test.shape[1] != x_train.shape[1] or y_test.shape[1] != y_train.shape[1]:
        raise ValueError("train and test feature sizes differ")
    x_train, y_train, x_test, y_test = (t.double() for t in (x_train, y_train, x_test, y_test))
    mu, sd, w, _ = _fit_ridge(x_train, y_train, alpha)
    pred = _apply(x_test, mu, sd, w)
    ss_res = ((pred - y_test) ** 2).sum(0)
    ss_tot = ((y_test - y_test.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    r2 = float((1 - ss_res / ss_tot).mean())
    cos = float(F.cosine_similarity(pred, y_test, dim=1).mean())
    return {"r2": r2, "cosine": cos, "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0])}


def classification_probe(x_train: Tensor, labels_train: Tensor, x_test: Tensor, labels_test: Tensor,
                         num_classes: Optional[int] = None, alpha: float = 1.0) -> Dict[str, float]:
    """Linear classifier (ridge onto one-hot labels, argmax) from ``x [N, D]`` to ``labels [N]`` (e.g.
    phones). Returns ``accuracy`` and the ``majority`` baseline accuracy on the test frames."""
    k = int(num_classes or int(max(labels_train.max(), labels_test.max())) + 1)
    y = F.one_hot(labels_train.long(), k).double()
    mu, sd, w, _ = _fit_ridge(x_train.double(), y, alpha)
    pred = _apply(x_test.double(), mu, sd, w).argmax(1)
    acc = float((pred == labels_test.long()).double().mean())
    majority = float((labels_test.long() == torch.bincount(labels_train.long(), minlength=k).argmax()).double().mean())
    return {"accuracy": acc, "majority": majority}


def one_hot_codes(codes: Tensor, codebook_size: int) -> Tensor:
    """``codes [N]`` or ``[N, K]`` -> concatenated one-hot ``[N, K * codebook_size]`` (float)."""
    if codes.dim() == 1:
        codes = codes[:, None]
    return F.one_hot(codes.long().clamp_min(0), codebook_size).flatten(1).float()
