"""Training augmentation: off by default, each effect does what it says, reproducible from the generator."""

import numpy as np
import pytest
import torch

from sonotok.data.augment import Augmentation, rir_bank

SR = 16000


def _speech(seconds=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * torch.sin(2 * np.pi * 2 * t)
    ph = 2 * np.pi * torch.cumsum(f0, 0) / SR
    x = sum(torch.sin(k * ph) / k for k in range(1, 25)) * 0.1 + 0.01 * torch.randn(t.shape, generator=g)
    return x[None].float()


def _band_energy(x, lo, hi):
    spec = torch.fft.rfft(x[0]).abs() ** 2
    f = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def test_off_by_default_is_identity():
    aug = Augmentation()
    x = _speech()
    assert not aug.enabled
    assert torch.equal(aug(x, SR, np.random.default_rng(0)), x)


def test_reverb_from_simulated_rooms():
    pytest.importorskip("pyroomacoustics")
    bank = rir_bank(SR, count=4, rt60=(0.3, 0.6))
    assert len(bank) == 4 and all(abs(float(np.sum(h**2)) - 1) < 1e-4 for h in bank)
    assert all(int(np.argmax(np.abs(h))) == 0 for h in bank)  # direct path first: output stays aligned
    assert all(0.1 * SR < h.size <= 0.73 * SR for h in bank)
    x = _speech()
    y = Augmentation(reverb_prob=1.0, rir_count=4, rt60=(0.3, 0.6))(x, SR, np.random.default_rng(1))
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-3)
    assert float(y.pow(2).mean().sqrt()) == pytest.approx(float(x.pow(2).mean().sqrt()), rel=0.05)
    corr = float((x * y).sum() / (x.norm() * y.norm()))
    assert 0.2 < corr < 0.999


def test_noise_gain_bandlimit_and_determinism():
    x = _speech()
    noisy = Augmentation(noise_prob=1.0, snr_db=(20, 20), noise_kinds=("pink",))(x, SR, np.random.default_rng(2))
    snr = 10 * torch.log10(x.pow(2).mean() / (noisy - x).pow(2).mean())
    assert float(snr) == pytest.approx(20.0, abs=0.2)
    louder = Augmentation(gain_prob=1.0, gain_db=(6, 6))(x, SR, np.random.default_rng(3))
    assert float(louder.abs().max() / x.abs().max()) == pytest.approx(10 ** (6 / 20), rel=1e-3)
    assert float(Augmentation(gain_prob=1.0, gain_db=(40, 40))(x, SR, np.random.default_rng(3)).abs().max()) <= 0.99 + 1e-6
    white = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    tel = Augmentation(bandlimit_prob=1.0, bandlimit_rates=(8000,))(white, SR, np.random.default_rng(4))
    assert tel.shape == white.shape
    assert _band_energy(white, 4500, 8000) > 0.3 and _band_energy(tel, 4500, 8000) < 0.01
    aug = Augmentation(noise_prob=0.5, gain_prob=0.5, bandlimit_prob=0.5)
    a = aug(x, SR, np.random.default_rng(9))
    b = aug(x, SR, np.random.default_rng(9))
    assert torch.equal(a, b)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="noise kinds"):
        Augmentation(noise_kinds=("rain",))
    with pytest.raises(ValueError, match="reverb_prob"):
        Augmentation(reverb_prob=1.5)
    with pytest.raises(ValueError, match=r"\[C, T\]"):
        Augmentation(gain_prob=1.0)(torch.zeros(SR), SR, np.random.default_rng(0))
