import pytest
import torch

from sonotok.losses.spectral import (
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    WaveformLoss,
    mel_distance,
)

SR = 16000


def _audio(b=2, c=1, t=4000):
    t_axis = torch.arange(t) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t_axis)
    return (tone + 0.05 * torch.randn(b, c, t)).clamp(-1, 1)


def _small_mel():
    return MultiResolutionMelLoss(SR, n_ffts=(256, 512), n_mels=(32, 64))


def test_mel_zero_for_identical_and_positive_for_different():
    loss = _small_mel()
    x = _audio()
    assert set(loss(x, x)) == {"rec/mel"}
    assert loss(x, x)["rec/mel"].item() == pytest.approx(0.0, abs=1e-7)
    assert loss(_audio(), x)["rec/mel"].item() > 0


def test_mel_detects_10db_gain_change():
    loss = MultiResolutionMelLoss(SR, n_ffts=(512,), n_mels=64)
    x = _audio()
    gain = 10 ** (-10 / 20)
    val = loss(x * gain, x)["rec/mel"].item()
    # magnitude mel in log10: 10 dB is 0.5 in every bin above the floor
    assert val == pytest.approx(0.5, abs=0.05)


def test_mel_default_resolutions_have_no_empty_filters():
    for sr in (16000, 24000):
        MultiResolutionMelLoss(sr)


def test_mel_rejects_empty_filters():
    with pytest.raises(ValueError, match="empty mel filters"):
        MultiResolutionMelLoss(SR, n_ffts=(64,), n_mels=(128,))


def test_mel_crops_to_min_length_and_gradients_flow():
    loss = _small_mel()
    x = _audio(t=4003)
    y = (_audio(t=4000) * 0.5).requires_grad_(True)
    out = loss(y, x)["rec/mel"]
    out.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_mel_multichannel():
    loss = _small_mel()
    x = _audio(c=2)
    assert loss(x, x)["rec/mel"].item() == pytest.approx(0.0, abs=1e-7)


def test_mel_has_no_per_call_windows():
    loss = _small_mel()
    names = [n for n, _ in loss.named_buffers()]
    assert any("window" in n for n in names) and any("fb" in n for n in names)


@pytest.mark.parametrize("compressed", [False, True])
def test_stft_loss(compressed):
    w = 1.0 if compressed else 0.0
    loss = MultiResolutionSTFTLoss(n_ffts=(256, 512), compressed_mag_weight=w, compressed_complex_weight=w)
    x = _audio()
    assert set(loss(x, x)) == {"rec/stft"}
    assert loss(x, x)["rec/stft"].item() == pytest.approx(0.0, abs=1e-5)
    y = (0.5 * x[..., :3990]).requires_grad_(True)
    out = loss(y, x)["rec/stft"]
    assert out.item() > 0
    out.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_stft_compressed_complex_sees_phase():
    loss = MultiResolutionSTFTLoss(
        n_ffts=(256,), sc_weight=0.0, log_mag_weight=0.0, compressed_complex_weight=1.0
    )
    x = _audio(b=1)
    assert loss(-x, x)["rec/stft"].item() > 0.01


def test_waveform_and_loudness():
    loss = WaveformLoss(loudness=True, frame_length=256)
    x = _audio()
    out = loss(x, x)
    assert set(out) == {"rec/wave", "rec/loudness"}
    assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in out.values())
    quiet = loss(x * 10 ** (-6 / 20), x)
    assert quiet["rec/wave"].item() > 0
    assert quiet["rec/loudness"].item() == pytest.approx(6.0, abs=0.1)
    assert set(WaveformLoss()(x, x)) == {"rec/wave"}


def test_loudness_gradient_sign():
    """A too-quiet output is pushed up, a too-loud one down."""
    loss = WaveformLoss(l1_weight=0.0, loudness=True, frame_length=256)
    x = _audio()
    for g0, sign in ((0.3, -1.0), (3.0, 1.0)):
        g = torch.tensor(g0, requires_grad=True)
        loss(g * x, x)["rec/loudness"].backward()
        assert torch.sign(g.grad).item() == sign


def test_loudness_ignores_silence_below_floor():
    loss = WaveformLoss(l1_weight=0.0, loudness=True, frame_length=256, floor_db=-60)
    x = torch.zeros(1, 1, 2000)
    y = 1e-5 * torch.randn(1, 1, 2000)
    assert loss(y, x)["rec/loudness"].item() == 0.0


def test_mel_distance():
    x = _audio()
    assert mel_distance(x, x, SR).item() == pytest.approx(0.0, abs=1e-7)
    assert mel_distance(x * 10 ** (-10 / 20), x, SR).item() == pytest.approx(0.5, abs=0.05)
    assert mel_distance(_audio(t=4001), x, SR).item() > 0
    assert mel_distance(x[:, 0], x[:, 0, :3000], SR).ndim == 0


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        _small_mel()(torch.zeros(1, 2, 3000), torch.zeros(2, 1, 3000))
    with pytest.raises(ValueError, match="too short"):
        _small_mel()(torch.zeros(1, 1, 100), torch.zeros(1, 1, 100))


def test_losses_run_in_float32_under_autocast():
    x = _audio()
    y = _audio()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for loss in (_small_mel(), MultiResolutionSTFTLoss(n_ffts=(256,), compressed_complex_weight=1.0)):
            out = loss(y.bfloat16(), x)
            assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
        assert mel_distance(y, x, SR).dtype == torch.float32


def test_phase_derivative_loss_sees_phase_structure_not_sign_or_level():
    from sonotok.losses.spectral import PhaseDerivativeLoss

    torch.manual_seed(0)
    loss = PhaseDerivativeLoss(n_fft=320, hop_length=80)
    x = torch.randn(2, 1, 4000) * 0.1
    same = loss(x, x)["rec/phase"]
    assert same < 1e-3
    # a sign flip or a gain keeps every phase derivative: no loss
    assert loss(-x, x)["rec/phase"] < 1e-3 and loss(3 * x, x)["rec/phase"] < 1e-3
    # a sample delay keeps frame-to-frame advance but tilts the phase across bins
    assert loss(torch.roll(x, 7, -1), x)["rec/phase"] > 0.05
    # unrelated noise of the same spectrum: large error; gradients finite
    y = (torch.randn(2, 1, 4000) * 0.1).requires_grad_()
    out = loss(y, x)["rec/phase"]
    assert out > 0.5
    out.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    # each term can be switched off
    only_if = PhaseDerivativeLoss(n_fft=320, hop_length=80, gd_weight=0.0)
    assert only_if(torch.roll(x, 7, -1), x)["rec/phase"] < loss(torch.roll(x, 7, -1), x)["rec/phase"]
