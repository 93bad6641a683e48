import math

import pytest
import torch

from sonotok.metrics import bitrate, mel_distance, pesq_wb, si_sdr, stoi, tokens_per_second


def speech_like(
    seconds: float = 2.0, sample_rate: int = 16000, f0: float = 120.0, seed: int = 0
) -> torch.Tensor:
    """Harmonic tone with a gliding pitch, formant-shaped harmonics and syllable-rate AM, ``[T]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.1 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    formants = torch.tensor([500.0, 1500.0, 2500.0]) * (1 + 0.2 * torch.rand(3, generator=g))
    wav = torch.zeros_like(t)
    for h in range(1, 30):
        freq = h * f0
        if freq > sample_rate / 2 - 200:
            break
        amp = sum(torch.exp(-(((freq - f) / 150.0) ** 2)) for f in formants) + 0.02
        wav += amp * torch.sin(h * phase)
    envelope = (0.5 - 0.5 * torch.cos(2 * math.pi * 3.5 * t)) ** 2  # syllables with short pauses
    wav = wav * envelope
    return 0.3 * wav / wav.abs().max()


def test_pesq_identical_high_noise_low():
    ref = speech_like()
    assert pesq_wb(ref, ref.clone(), 16000).item() > 4.0
    noise = 0.3 * torch.randn_like(ref)
    assert pesq_wb(ref, noise, 16000).item() < 2.0


def test_pesq_batch_shape_resample_and_nb():
    ref = speech_like(seconds=1.0, sample_rate=24000).view(1, 1, -1).repeat(2, 1, 1)
    out = pesq_wb(ref, ref.clone(), 24000)
    assert out.shape == (2, 1) and (out > 4.0).all()
    ref8 = speech_like(seconds=1.0, sample_rate=8000)
    assert pesq_wb(ref8, ref8, 8000).item() > 4.0


def test_pesq_silence_gives_nan_with_warning():
    silence = torch.zeros(16000)
    with pytest.warns(UserWarning, match="PESQ failed"):
        out = pesq_wb(silence, silence, 16000)
    assert math.isnan(out.item())


def test_stoi():
    ref = speech_like()
    assert stoi(ref, ref.clone(), 16000).item() > 0.99
    assert stoi(ref, torch.randn_like(ref), 16000).item() < 0.5


def test_si_sdr():
    ref = speech_like(seconds=0.5)
    assert si_sdr(ref, 0.5 * ref).item() > 60
    assert si_sdr(ref, torch.randn_like(ref)).item() < 0
    assert si_sdr(ref.view(2, 1, -1), ref.view(2, 1, -1)).shape == (2, 1)


def test_mel_distance():
    ref = speech_like(seconds=0.5)
    same = float(mel_distance(ref, ref.clone(), 16000).mean())
    diff = float(mel_distance(ref, ref + 0.1 * torch.randn_like(ref), 16000).mean())
    assert same < 1e-4 < diff


def test_bitrate():
    assert bitrate(75.0, 8, 1024) == 6000.0
    assert bitrate(12.5, 8, 2048) == 1100.0
    assert tokens_per_second(12.5, 8) == 100.0


def _reference_mel_distance(x_hat, x, sr, n_fft=1024, hop=256, n_mels=80, eps=1e-5):
    """The validation metric written out: centred Hann STFT magnitudes, Slaney mel filters, log10, L1."""
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, n_mels, sr, norm="slaney",
                                               mel_scale="slaney")
    spec = torch.stft(torch.cat([x_hat, x]).reshape(-1, x.shape[-1]), n_fft, hop, n_fft, torch.hann_window(n_fft),
                      center=True, pad_mode="reflect", return_complex=True).abs()
    mel = torch.log10(torch.einsum("bft,fm->bmt", spec, fb).clamp(min=eps))
    a, b = mel.chunk(2)
    return (a - b).abs().mean(dim=(-2, -1))


def test_one_mel_distance_for_training_and_evaluation():
    from sonotok.losses.spectral import mel_distance as loss_mel_distance
    from sonotok.metrics.mel import mel_distance as core

    assert loss_mel_distance is core  # the training validation metric is this one function
    ref = speech_like(seconds=0.5).view(2, 1, -1)
    est = ref + 0.05 * torch.randn_like(ref)
    expected = _reference_mel_distance(est, ref, 16000)
    per_item = mel_distance(ref, est, 16000)  # evaluation: one value per item
    assert per_item.shape == (2, 1)
    torch.testing.assert_close(per_item.reshape(-1), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_mel_distance(est, ref, 16000), expected.mean(), rtol=1e-5, atol=1e-6)
    assert float(mel_distance(ref, ref, 16000).max()) == 0.0


def test_mel_distance_refuses_a_resolution_with_empty_filters():
    import pytest

    from sonotok.metrics.mel import mel_distance as core

    x = speech_like(seconds=0.5)
    with pytest.raises(ValueError, match="empty filters"):
        core(x, x, 16000, n_fft=64, hop_length=16, n_mels=80)
