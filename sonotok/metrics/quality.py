"""Signal quality metrics of a reconstruction against its reference.

Thin wrappers over torchmetrics (which wraps the reference implementations ``pesq`` and ``pystoi``) that
take any ``[..., T]`` shapes, handle resampling, and never crash on silent input:

- PESQ (ITU-T P.862 / P.862.2; Rix et al. 2001): wide-band at 16 kHz, narrow-band for 8 kHz input.
- STOI (Taal et al. 2011, "An Algorithm for Intelligibility Prediction of Time-Frequency Weighted
  Noisy Speech").
- SI-SDR (Le Roux et al. 2019, "SDR - Half-baked or Well Done?").
- mel distance: L1 between log-mel spectrograms (:mod:`sonotok.metrics.mel`, the training metric).

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

from sonotok.metrics.mel import log_mel
from sonotok.metrics.mel import mel_distance as _mel_distance

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


def mel_distance(ref: Tensor, est: Tensor, sample_rate: int) -> Tensor:
    """Log-mel L1 distance between ``ref`` and ``est`` ``[..., T]``, per item (lower is better).

    The training validation metric (:func:`sonotok.metrics.mel.mel_distance`), so evaluation and training
    numbers agree.

    Returns:
        float tensor of shape ``ref.shape[:-1]``, on the CPU.
    """
    ref, est = _check_pair(ref, est)
    with torch.no_grad():
        return _mel_distance(est, ref, int(sample_rate), reduction="none").cpu()
