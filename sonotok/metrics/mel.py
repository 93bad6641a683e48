"""The one mel distance of the package (training validation, evaluation, benchmarks) and log-mel spectra.

Both are built on ``torchaudio.transforms.MelSpectrogram`` (Slaney-normalised Slaney-scale filters,
magnitude spectra, centred Hann-windowed STFT); the transforms are built once per resolution and device
and cached. Spectra and logs are computed in float32 with autocast off, so mixed-precision callers get
the same numbers.

- :func:`mel_distance`: mean L1 distance between log10 mel spectrograms at one resolution (DAC's and
  EnCodec's reconstruction metric, Kumar et al. 2023; Défossez et al. 2023); ``sonotok.losses.spectral``
  re-exports it as the validation metric of codec training, :func:`sonotok.metrics.quality.mel_distance`
  scores evaluation files with it.
- :func:`log_mel`: a natural-log mel spectrogram for plots, window scaled with the rate.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torchaudio
from torch import Tensor

__all__ = ["mel_spectrogram", "mel_distance", "log_mel"]

_TRANSFORMS: dict[tuple, torchaudio.transforms.MelSpectrogram] = {}


def mel_spectrogram(
    sample_rate: int, n_fft: int, hop_length: int, n_mels: int, device: torch.device | str = "cpu",
    pad_mode: str = "reflect",
) -> torchaudio.transforms.MelSpectrogram:
    """The cached magnitude mel transform of one resolution on ``device`` (``[..., T] -> [..., n_mels, F]``).

    Raises:
        ValueError: when the resolution leaves mel filters empty (too many mels for ``n_fft``).
    """
    device = torch.device(device)
    key = (int(sample_rate), int(n_fft), int(hop_length), int(n_mels), pad_mode, str(device))
    mel = _TRANSFORMS.get(key)
    if mel is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchaudio warns on empty filters; we raise instead
            mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=int(sample_rate), n_fft=int(n_fft), hop_length=int(hop_length), n_mels=int(n_mels),
                f_min=0.0, f_max=sample_rate / 2, power=1.0, center=True, pad_mode=pad_mode,
                norm="slaney", mel_scale="slaney",
            )
        empty = int((mel.mel_scale.fb.amax(dim=0) <= 0).sum())
        if empty:
            raise ValueError(f"mel spectrogram: n_fft={n_fft}, n_mels={n_mels} at {sample_rate} Hz "
                             f"has {empty} empty filters; use fewer mels or a larger n_fft")
        mel = mel.to(device)
        _TRANSFORMS[key] = mel
    return mel


def _float32(device_type: str):
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # a device type without autocast
        return contextlib.nullcontext()


def mel_distance(
    x_hat: Tensor,
    x: Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    eps: float = 1e-5,
    reduction: str = "mean",
) -> Tensor:
    """Mean L1 distance between log10 magnitude mel spectrograms (lower is better; 0 for equal inputs).

    Symmetric in its two inputs. Both are cropped to the shorter length.

    Args:
        x_hat: reconstruction ``[..., T1]`` (e.g. ``[B, C, T]``, ``[B, T]`` or ``[T]``).
        x: reference ``[..., T2]`` with the same leading shape.
        sample_rate: sample rate in Hz.
        n_fft: FFT and Hann window size.
        hop_length: hop in samples.
        n_mels: mel bands.
        eps: clamp floor before the log.
        reduction: ``"mean"`` (a scalar over every item) or ``"none"`` (one value per item, shape
            ``x.shape[:-1]``).

    Returns:
        a float32 tensor on the inputs' device.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"mel_distance: reduction must be 'mean' or 'none', got {reduction!r}")
    if x_hat.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"mel_distance: leading shapes differ, got {tuple(x_hat.shape)} and {tuple(x.shape)} "
                         "([..., T] each)")
    n = min(x_hat.shape[-1], x.shape[-1])
    if n == 0:
        raise ValueError(f"mel_distance: empty audio, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
    lead = x.shape[:-1]
    with _float32(x.device.type):
        both = torch.cat([x_hat[..., :n].reshape(-1, n), x[..., :n].reshape(-1, n)]).float()
        pad_mode = "reflect" if n > n_fft // 2 else "constant"  # reflect padding needs more samples than the pad
        mel = mel_spectrogram(sample_rate, n_fft, hop_length, n_mels, x.device, pad_mode)(both)
        m_hat, m = torch.log10(mel.clamp(min=eps)).chunk(2, dim=0)
        per_item = (m_hat - m).abs().mean(dim=(-2, -1))
    return per_item.mean() if reduction == "mean" else per_item.reshape(lead)


def log_mel(wav: Tensor, sample_rate: int, n_mels: int = 80, eps: float = 1e-5) -> Tensor:
    """Natural-log mel spectrogram ``[..., n_mels, frames]`` (window 1024 at 24 kHz, scaled with the rate)."""
    n_fft = 1 << max(6, round(math.log2(1024 * sample_rate / 24000)))
    with _float32(wav.device.type):
        return mel_spectrogram(sample_rate, n_fft, n_fft // 4, n_mels, wav.device)(wav.float()).clamp_min(eps).log()
