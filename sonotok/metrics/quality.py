"""Signal quality metrics of a reconstruction against its reference.

Thin wrappers over torchmetrics (which wraps the reference implementations ``pesq`` and ``pystoi``) that
take any ``[..., T]`` shapes, handle resampling, and never crash on silent input:

- PESQ (ITU-T P.862 / P.862.2; Rix et al. 2001): wide-band at 16 kHz, narrow-band for 8 kHz input.
- STOI (Taal et al. 2011, "An Algorithm for Intelligibility Prediction of Time-Frequency Weighted
  Noisy Speech").
- SI-SDR (Le Roux et al. 2019, "SDR - Half-baked or Well Done?").
- mel distance: L1 between log-mel spectrograms (from ``sonotok.losses.spectral`` when available).

Every function returns a float tensor with the leading (batch) dimensions of its inputs.
"""

from __future__ import annotations

import math
import warnings

import torch
import torchaudio
from torch import Tensor
from torchmetrics.functional.audio import (
    perceptual_evaluation_speech_quality,
    scale_invariant_signal_distortion_ratio,
    short_time_objective_intelligibility,
)

__all__ = ["pesq_wb", "stoi", "si_sdr", "mel_distance", "log_mel"]

PESQ_RATE = 16000


def _check_pair(ref: Tensor, est: Tensor) -> tuple[Tensor, Tensor]:
    if ref.shape != est.shape:
        raise ValueError(
            f"ref and est must have the same shape [..., T], got {tuple(ref.shape)} and {tuple(est.shape)}"
        )
    return ref.detach().float(), est.detach().float()


def pesq_wb(ref: Tensor, est: Tensor, sample_rate: int) -> Tensor:
    """PESQ MOS-LQO of ``est`` against ``ref``.

    Input at 8 kHz is scored in narrow-band mode; any other rate is resampled to 16 kHz and scored in
    wide-band mode (P.862.2). Items where PESQ fails (e.g. "no utterances detected" on silence, or audio
    shorter than ~0.25 s) give NaN with a warning.

    Args:
        ref: reference audio ``[..., T]``.
        est: estimate, same shape.
        sample_rate: their sample rate.

    Returns:
        float tensor of shape ``ref.shape[:-1]`` (a 0-dim tensor for ``[T]`` input), on the CPU.
    """
    ref, est = _check_pair(ref, est)
    if sample_rate == 8000:
        fs, mode = 8000, "nb"
    else:
        fs, mode = PESQ_RATE, "wb"
        if sample_rate != PESQ_RATE:
            ref = torchaudio.functional.resample(ref, sample_rate, PESQ_RATE)
            est = torchaudio.functional.resample(est, sample_rate, PESQ_RATE)
    batch_shape = ref.shape[:-1]
    ref2 = ref.reshape(-1, ref.shape[-1]).cpu()
    est2 = est.reshape(-1, est.shape[-1]).cpu()
    out = torch.full((ref2.shape[0],), math.nan)
    for i in range(ref2.shape[0]):
        try:
            out[i] = perceptual_evaluation_speech_quality(est2[i], ref2[i], fs=fs, mode=mode).float()
        except Exception as err:  # pesq.PesqError subclasses: NoUtterancesError, BufferTooShortError, ...
            warnings.warn(f"PESQ failed ({type(err).__name__}: {err}); returning NaN", stacklevel=2)
    return out.reshape(batch_shape)


def stoi(ref: Tensor, est: Tensor, sample_rate: int, extended: bool = False) -> Tensor:
    """Short-time objective intelligibility (0..1) of ``est`` against ``ref``.

    Args:
        ref: reference audio ``[..., T]``.
        est: estimate, same shape.
        sample_rate: their sample rate (pystoi resamples to 10 kHz internally).
        extended: ESTOI instead of STOI.

    Returns:
        float tensor of shape ``ref.shape[:-1]``, on the CPU.
    """
    ref, est = _check_pair(ref, est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns when a signal is too short / silent
        return short_time_objective_intelligibility(
            est.cpu(), ref.cpu(), fs=int(sample_rate), extended=extended
        ).float()


def si_sdr(ref: Tensor, est: Tensor) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (zero-mean), shape ``ref.shape[:-1]``."""
    ref, est = _check_pair(ref, est)
    return scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True)


_MEL_CACHE: dict = {}


def log_mel(wav: Tensor, sample_rate: int, n_mels: int = 80, eps: float = 1e-5) -> Tensor:
    """Natural-log mel spectrogram ``[..., n_mels, frames]`` (window 1024 at 24 kHz, scaled with the rate)."""
    n_fft = 1 << max(6, round(math.log2(1024 * sample_rate / 24000)))
    key = (int(sample_rate), n_fft, n_mels, str(wav.device))
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=int(sample_rate),
            n_fft=n_fft,
            hop_length=n_fft // 4,
            n_mels=n_mels,
            f_min=0.0,
            f_max=sample_rate / 2,
            power=1.0,
            center=True,
            norm="slaney",
            mel_scale="slaney",
        ).to(wav.device)
    return _MEL_CACHE[key](wav.float()).clamp_min(eps).log()


def _mel_distance_local(x: Tensor, y: Tensor, sample_rate: int) -> Tensor:
    """Mean L1 distance between log-mel spectrograms of ``x`` and ``y`` (per item, ``x.shape[:-1]``)."""
    mx, my = log_mel(x, sample_rate), log_mel(y, sample_rate)
    return (mx - my).abs().mean(dim=(-2, -1))


def mel_distance(ref: Tensor, est: Tensor, sample_rate: int) -> Tensor:
    """Log-mel L1 distance between ``ref`` and ``est`` ``[..., T]``, per item (lower is better).

    Uses ``sonotok.losses.spectral.mel_distance`` (the training validation metric, so evaluation and
    training numbers agree) when that module is present, else a single-resolution log-mel L1.

    Returns:
        float tensor of shape ``ref.shape[:-1]``, on the CPU.
    """
    ref, est = _check_pair(ref, est)
    try:
        from sonotok.losses.spectral import mel_distance as _loss_mel_distance
    except ImportError:
        return _mel_distance_local(ref, est, sample_rate).cpu()
    batch_shape = ref.shape[:-1]
    ref2 = ref.reshape(-1, 1, 1, ref.shape[-1])
    est2 = est.reshape(-1, 1, 1, est.shape[-1])
    with torch.no_grad():
        out = [
            torch.as_tensor(_loss_mel_distance(e, r, int(sample_rate))).float().cpu()
            for r, e in zip(ref2, est2)
        ]
    return torch.stack(out).reshape(batch_shape)
