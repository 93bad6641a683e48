"""Real-time phase-gradient heap integration (sonotok.modules.pghi), issue 15's phase-path lever."""

import numpy as np
import pytest
import torch

from sonotok.modules.pghi import HANN_GAMMA, pghi_gradients, rtpghi

N_FFT, HOP, SR = 640, 160, 16000
WIN = torch.hann_window(N_FFT, periodic=True)


def _stft(x):
    return torch.stft(x, N_FFT, HOP, window=WIN, center=True, return_complex=True).T  # [T, F]


def _istft(spec, n):
    return torch.istft(spec.T, N_FFT, HOP, window=WIN, center=True, length=n)


def _chirp_and_tone(seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return torch.tensor(0.5 * np.sin(2 * np.pi * (300 * t + 400 * t**2)) + 0.3 * np.sin(2 * np.pi * 1234 * t),
                        dtype=torch.float32)


def _consistency_db(mag, phase, n):
    """Spectral convergence (dB) of the resynthesis: how far |STFT(istft(mag e^{i phase}))| is from mag."""
    y = _istft(torch.polar(torch.tensor(mag), torch.tensor(phase)).to(torch.complex64), n)
    m2 = _stft(y).abs().double().numpy()
    return 20 * np.log10(np.linalg.norm(m2 - mag) / np.linalg.norm(mag))


@pytest.mark.parametrize("causal", [True, False])
def test_phase_from_magnitude_is_consistent(causal):
    x = _chirp_and_tone()
    mag = _stft(x).abs().double().numpy()
    sc = _consistency_db(mag, rtpghi(mag, HOP, N_FFT, causal=causal), len(x))
    rng = np.random.default_rng(0)
    sc_random = _consistency_db(mag, rng.uniform(-np.pi, np.pi, mag.shape), len(x))
    assert sc < -18.0, sc  # measured -21.0 (causal) / -22.6 (look-ahead)
    assert sc_random > -6.0, sc_random  # a random phase is far from consistent (measured -3.9)


def test_stationary_tone_advances_like_the_true_phase():
    m0 = 40  # a tone exactly on bin 40 (1 kHz)
    t = np.arange(SR) / SR
    x = torch.tensor(np.cos(2 * np.pi * m0 * SR / N_FFT * t), dtype=torch.float32)
    spec = _stft(x)
    mag = spec.abs().double().numpy()
    tgrad, _, _ = pghi_gradients(mag, HOP, N_FFT, HANN_GAMMA * N_FFT**2)
    assert tgrad[10, m0] == pytest.approx(2 * np.pi * HOP * m0 / N_FFT, abs=1e-6)
    ph = rtpghi(mag, HOP, N_FFT)
    true = spec.angle().double().numpy()
    adv = np.angle(np.exp(1j * (ph[6:-6, m0] - ph[5:-7, m0])))
    true_adv = np.angle(np.exp(1j * (true[6:-6, m0] - true[5:-7, m0])))
    assert np.allclose(adv, true_adv, atol=1e-3)
    # neighbouring bins of a tone in a frame-start (torch.stft) frame alternate in phase by pi
    rel = np.angle(np.exp(1j * (ph[10, m0 + 1] - ph[10, m0])))
    true_rel = np.angle(np.exp(1j * (true[10, m0 + 1] - true[10, m0])))
    assert abs(np.angle(np.exp(1j * (rel - true_rel)))) < 0.2


def test_silence_and_bad_shapes():
    ph = rtpghi(np.zeros((5, N_FFT // 2 + 1)), HOP, N_FFT)
    assert ph.shape == (5, N_FFT // 2 + 1) and np.isfinite(ph).all()
    with pytest.raises(ValueError, match="321"):
        rtpghi(np.ones((5, 100)), HOP, N_FFT)
