"""PerceptualPESQLoss (issue 15's magnitude-path lever): a differentiable P.862 disturbance."""

import numpy as np
import pytest
import torch

from sonotok.losses.spectral import PerceptualPESQLoss
from sonotok.metrics.quality import pesq_wb


def _speechlike(seconds=1.5, sr=16000, seed=0):
    """A voiced, amplitude-modulated harmonic signal with formant-like colouring and pauses."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * torch.sin(2 * torch.pi * 1.3 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sr
    x = sum((1.0 / k) * torch.sin(k * phase) * (1 + 0.8 * torch.cos(torch.tensor(k * 0.7))) for k in range(1, 20))
    env = (torch.sin(2 * torch.pi * 2.5 * t).clamp(min=0)) ** 0.5
    return (0.1 * x * env + 0.002 * torch.randn(t.shape, generator=g)).float()


def test_loss_orders_degradations_like_pesq():
    loss = PerceptualPESQLoss(16000, mos_key="rec/pesq_mos")
    x = _speechlike()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    levels = [0.002, 0.01, 0.05]
    vals, mos, true = [], [], []
    for lv in levels:
        y = x + lv * noise
        out = loss(y[None, None], x[None, None])
        vals.append(float(out["rec/pesq"]))
        mos.append(float(out["rec/pesq_mos"]))
        true.append(float(pesq_wb(x[None], y[None], 16000)))
    assert vals[0] < vals[1] < vals[2], vals  # more noise, more disturbance
    assert mos[0] > mos[1] > mos[2], mos
    assert true[0] > true[1] > true[2], true  # the reference metric agrees on the order
    # the estimate is on PESQ's scale (no delay search, but the codec output is aligned): within 0.6 MOS
    assert np.max(np.abs(np.array(mos) - np.array(true))) < 0.6, (mos, true)


def test_gradient_reaches_the_reconstruction():
    loss = PerceptualPESQLoss(16000)
    x = _speechlike()[None, None].repeat(2, 1, 1)
    y = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).requires_grad_()
    v = loss(y, x)["rec/pesq"]
    v.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    # a step against the gradient lowers the loss
    with torch.no_grad():
        y2 = y - 1e-4 * y.grad / y.grad.abs().max()
    assert float(loss(y2, x)["rec/pesq"]) < float(v)


def test_silent_reference_items_are_left_out():
    loss = PerceptualPESQLoss(16000)
    x = torch.stack([_speechlike(), torch.zeros(24000)])[:, None]
    y = (x + 0.01).requires_grad_()
    both = loss(y, x)["rec/pesq"]
    alone = loss(y[:1], x[:1])["rec/pesq"]
    assert torch.allclose(both, alone)
    silent = loss(torch.zeros(1, 1, 24000, requires_grad=True), torch.zeros(1, 1, 24000))["rec/pesq"]
    assert float(silent) == 0.0 and silent.requires_grad


def test_too_short_segment_is_a_clear_error():
    with pytest.raises(ValueError, match="PerceptualPESQLoss"):
        PerceptualPESQLoss(16000)(torch.zeros(1, 1, 500), torch.zeros(1, 1, 500))
