"""Spectral reconstruction losses for codec training (and the mel-distance validation metric, re-exported
from :mod:`sonotok.metrics.mel`).

All losses take ``(x_hat, x)``: the reconstruction and the reference, audio ``[B, C, T]`` (``[B, T]`` is
read as one channel). Lengths may differ by a few samples (decoder padding); both are cropped to the
shorter one. Every loss returns ``dict[str, Tensor]`` with namespaced keys (``rec/mel``, ``rec/stft``,
``rec/wave``, ``rec/loudness``) that match the ``weights`` mapping of ``conf/loss/*.yaml``.

Spectra, logs and powers are computed in float32 with autocast disabled, so the losses are safe under
mixed precision.

References:
    - Yamamoto et al., "Parallel WaveGAN", ICASSP 2020 (multi-resolution STFT loss: spectral convergence
      + log magnitude).
    - Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN" (DAC), NeurIPS 2023
      (multi-scale log-mel L1).
    - Défossez et al., "High Fidelity Neural Audio Compression" (EnCodec), TMLR 2023 (multi-scale mel
      L1 + L2 and waveform L1).
    - Braun & Tashev, "A consolidated view of loss functions for supervised deep learning-based speech
      enhancement", TSP 2021 (power-law compressed magnitude and complex spectral losses, c = 0.3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from sonotok.losses._utils import crop_pair, no_autocast
from sonotok.metrics.mel import mel_distance  # the validation metric of codec training (one implementation)

__all__ = [
    "MultiResolutionMelLoss",
    "MultiResolutionSTFTLoss",
    "WaveformLoss",
    "PerceptualPESQLoss",
    "mel_distance",
]


def _resolutions(
    n_ffts: Sequence[int], hop_lengths: Sequence[int] | None, win_lengths: Sequence[int] | None, name: str
) -> list[tuple[int, int, int]]:
    n_ffts = [int(n) for n in n_ffts]
    hops = [n // 4 for n in n_ffts] if hop_lengths is None else [int(h) for h in hop_lengths]
    wins = list(n_ffts) if win_lengths is None else [int(w) for w in win_lengths]
    if not (len(n_ffts) == len(hops) == len(wins)) or not n_ffts:
        raise ValueError(
            f"{name}: n_ffts, hop_lengths and win_lengths need the same non-zero length, got "
            f"{n_ffts}, {hops}, {wins}"
        )
    for n, h, w in zip(n_ffts, hops, wins):
        if not (0 < h and 0 < w <= n):
            raise ValueError(f"{name}: bad resolution n_fft={n} hop={h} win={w} (need 0 < win <= n_fft)")
    return list(zip(n_ffts, hops, wins))


def _flatten_channels(x: Tensor) -> Tensor:
    """``[B, C, T]`` -> ``[B * C, T]`` in float32."""
    return x.reshape(-1, x.shape[-1]).float()


def _check_long_enough(t: int, n_fft: int, name: str) -> None:
    if t <= n_fft // 2:
        raise ValueError(
            f"{name}: audio of {t} samples is too short for n_fft={n_fft} (need more than {n_fft // 2})"
        )


def _empty_mel_filters(fb: Tensor) -> int:
    """Number of all-zero mel filters in a ``[n_freqs, n_mels]`` filterbank."""
    return int((fb.amax(dim=0) <= 0).sum())


class MultiResolutionMelLoss(nn.Module):
    """L1 distance between log-mel spectrograms at several STFT resolutions.

    For each resolution the loss is ``log_weight * L1(log10(max(M(x_hat), eps)), log10(max(M(x), eps)))
    + mag_weight * L1(M(x_hat), M(x))`` where ``M`` is a magnitude (``power=1``) mel spectrogram; the
    result is the mean over resolutions, so its scale does not depend on how many are used (DAC sums
    them: multiply the weight by the number of resolutions to match DAC's ``rec/mel`` weight of 15).

    Mel filterbanks and windows come from ``torchaudio.transforms.MelSpectrogram`` and are built once
    (buffers of submodules, they follow ``.to(device)``). Filterbanks with empty (all-zero) filters are
    rejected: lower ``n_mels`` for that ``n_fft`` or raise ``fmin``.

    See Kumar et al. 2023 (DAC) and Défossez et al. 2023 (EnCodec).

    Args:
        sample_rate: audio sample rate in Hz.
        n_ffts: FFT sizes, one per resolution. The defaults (256 ... 2048) suit 16-24 kHz audio.
        hop_lengths: hops per resolution (default ``n_fft // 4``).
        win_lengths: window lengths per resolution (default ``n_fft``).
        n_mels: mel bands per resolution (one int for all, or one per resolution).
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz (default Nyquist).
        log_eps: clamp floor before the log.
        mag_weight: weight of the L1 on linear mel magnitudes (EnCodec uses a linear term too).
        log_weight: weight of the L1 on log10 mel magnitudes.
        key: the returned key.
    """

    def __init__(
        self,
        sample_rate: int,
        n_ffts: Sequence[int] = (256, 512, 1024, 2048),
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        n_mels: int | Sequence[int] = (32, 64, 128, 128),
        fmin: float = 0.0,
        fmax: float | None = None,
        log_eps: float = 1e-5,
        mag_weight: float = 0.0,
        log_weight: float = 1.0,
        key: str = "rec/mel",
    ):
        super().__init__()
        res = _resolutions(n_ffts, hop_lengths, win_lengths, type(self).__name__)
        mels = [int(n_mels)] * len(res) if isinstance(n_mels, int) else [int(m) for m in n_mels]
        if len(mels) != len(res):
            raise ValueError(f"{type(self).__name__}: {len(mels)} n_mels for {len(res)} resolutions")
        self.sample_rate = int(sample_rate)
        self.log_eps = float(log_eps)
        self.mag_weight = float(mag_weight)
        self.log_weight = float(log_weight)
        self.key = key
        self.resolutions = res
        self.mels = nn.ModuleList()
        for (n_fft, hop, win), m in zip(res, mels):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchaudio warns on empty filters; we raise instead
                mel = torchaudio.transforms.MelSpectrogram(
                    sample_rate=self.sample_rate,
                    n_fft=n_fft,
                    win_length=win,
                    hop_length=hop,
                    f_min=fmin,
                    f_max=fmax,
                    n_mels=m,
                    power=1.0,
                    center=True,
                    pad_mode="reflect",
                    norm="slaney",
                    mel_scale="slaney",
                )
            empty = _empty_mel_filters(mel.mel_scale.fb)
            if empty:
                raise ValueError(
                    f"{type(self).__name__}: n_fft={n_fft} with n_mels={m} at {self.sample_rate} Hz "
                    f"(fmin={fmin}, fmax={fmax}) gives {empty} empty mel filters; use fewer mels"
                )
            self.mels.append(mel)

    def forward(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            x_hat: reconstruction ``[B, C, T1]``.
            x: reference ``[B, C, T2]``.

        Returns:
            ``{key: scalar}`` (default key ``rec/mel``).
        """
        x_hat, x = crop_pair(x_hat, x, type(self).__name__)
        with no_autocast(x.device.type):
            xh, xr = _flatten_channels(x_hat), _flatten_channels(x)
            both = torch.cat([xh, xr], dim=0)
            total = both.new_zeros(())
            for (n_fft, _, _), mel in zip(self.resolutions, self.mels):
                _check_long_enough(both.shape[-1], n_fft, type(self).__name__)
                m_hat, m = mel(both).chunk(2, dim=0)
                if self.log_weight:
                    log_hat = torch.log10(m_hat.clamp(min=self.log_eps))
                    log_ref = torch.log10(m.clamp(min=self.log_eps))
                    total = total + self.log_weight * F.l1_loss(log_hat, log_ref)
                if self.mag_weight:
                    total = total + self.mag_weight * F.l1_loss(m_hat, m)
        return {self.key: total / len(self.mels)}


class MultiResolutionSTFTLoss(nn.Module):
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1 (+ compressed terms).

    Per resolution, with ``S`` the complex STFT:

    - spectral convergence ``||  |S_hat| - |S|  ||_F / ||S||_F`` per item, averaged (Parallel WaveGAN);
    - log-magnitude ``mean |log|S_hat| - log|S||`` (natural log, clamped at ``eps``);
    - optional compressed magnitude ``mean (|S_hat|^c - |S|^c)^2`` and compressed complex
      ``mean |S_hat |S_hat|^(c-1) - S |S|^(c-1)|^2`` with ``c = compress_power`` (Braun & Tashev 2021).
      The compressed terms are linear-domain, so they keep loud peaks loud (log losses pull them down),
      and the complex one also constrains phase.

    The result is the weighted sum of the terms, averaged over resolutions.

    Args:
        n_ffts: FFT sizes, one per resolution.
        hop_lengths: hops (default ``n_fft // 4``).
        win_lengths: Hann window lengths (default ``n_fft``).
        sc_weight: weight of spectral convergence.
        log_mag_weight: weight of the log-magnitude L1.
        compressed_mag_weight: weight of the compressed-magnitude MSE (0 disables).
        compressed_complex_weight: weight of the compressed-complex MSE (0 disables).
        compress_power: the compression exponent ``c``.
        eps: floor for magnitudes (log and gradient of ``|S|^c`` at 0).
        key: the returned key.
    """

    def __init__(
        self,
        n_ffts: Sequence[int] = (512, 1024, 2048),
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        sc_weight: float = 1.0,
        log_mag_weight: float = 1.0,
        compressed_mag_weight: float = 0.0,
        compressed_complex_weight: float = 0.0,
        compress_power: float = 0.3,
        eps: float = 1e-5,
        key: str = "rec/stft",
    ):
        super().__init__()
        self.resolutions = _resolutions(n_ffts, hop_lengths, win_lengths, type(self).__name__)
        self.sc_weight = float(sc_weight)
        self.log_mag_weight = float(log_mag_weight)
        self.compressed_mag_weight = float(compressed_mag_weight)
        self.compressed_complex_weight = float(compressed_complex_weight)
        self.compress_power = float(compress_power)
        self.eps = float(eps)
        self.key = key
        self.specs = nn.ModuleList(
            torchaudio.transforms.Spectrogram(
                n_fft=n, win_length=w, hop_length=h, power=None, center=True, pad_mode="reflect"
            )
            for n, h, w in self.resolutions
        )

    def _terms(self, s_hat: Tensor, s: Tensor) -> Tensor:
        eps2 = self.eps**2
        mag_hat = torch.sqrt(s_hat.real.square() + s_hat.imag.square() + eps2)
        mag = torch.sqrt(s.real.square() + s.imag.square() + eps2)
        out = mag.new_zeros(())
        if self.sc_weight:
            num = torch.linalg.vector_norm(mag_hat - mag, dim=(-2, -1))
            den = torch.linalg.vector_norm(mag, dim=(-2, -1)).clamp(min=self.eps)
            out = out + self.sc_weight * (num / den).mean()
        if self.log_mag_weight:
            out = out + self.log_mag_weight * F.l1_loss(torch.log(mag_hat), torch.log(mag))
        c = self.compress_power
        if self.compressed_mag_weight:
            out = out + self.compressed_mag_weight * F.mse_loss(mag_hat.pow(c), mag.pow(c))
        if self.compressed_complex_weight:
            ch = s_hat * mag_hat.pow(c - 1.0)
            cr = s * mag.pow(c - 1.0)
            out = out + self.compressed_complex_weight * (ch - cr).abs().square().mean()
        return out

    def forward(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            x_hat: reconstruction ``[B, C, T1]``.
            x: reference ``[B, C, T2]``.

        Returns:
            ``{key: scalar}`` (default key ``rec/stft``).
        """
        x_hat, x = crop_pair(x_hat, x, type(self).__name__)
        with no_autocast(x.device.type):
            both = torch.cat([_flatten_channels(x_hat), _flatten_channels(x)], dim=0)
            total = both.new_zeros(())
            for (n_fft, _, _), spec in zip(self.resolutions, self.specs):
                _check_long_enough(both.shape[-1], n_fft, type(self).__name__)
                s_hat, s = spec(both).chunk(2, dim=0)
                total = total + self._terms(s_hat, s)
        return {self.key: total / len(self.specs)}


class PhaseDerivativeLoss(nn.Module):
    """Errors of instantaneous frequency and group delay, the phase structure a learned phase gets wrong.

    A decoder that predicts phase per frame (an inverse-STFT head) learns absolute phase slowly; what the
    ear hears is its derivatives: the phase advance from one frame to the next in each bin
    (instantaneous frequency) and the phase difference between neighbouring bins (group delay). Both
    are compared as ``1 - cos(error)`` of unit phasors (no 2-pi wrapping, smooth gradients), weighted by
    the reference's compressed magnitude of the bins involved so silent bins, whose phase is noise,
    do not count. The phase losses of APNet (Ai & Ling, 2023) and MP-SENet (Lu et al., 2023) use the
    same derivatives with an anti-wrapping L1.

    Args:
        n_fft: FFT size (use the decoder's synthesis frame).
        hop_length: hop (use the decoder's synthesis hop).
        if_weight: weight of the instantaneous-frequency term.
        gd_weight: weight of the group-delay term.
        compress_power: exponent of the magnitude weighting.
        eps: magnitude floor of the unit phasors.
        key: the returned key.
    """

    def __init__(
        self,
        n_fft: int = 640,
        hop_length: int = 160,
        if_weight: float = 1.0,
        gd_weight: float = 1.0,
        compress_power: float = 0.3,
        eps: float = 1e-5,
        key: str = "rec/phase",
    ):
        super().__init__()
        self.n_fft = int(n_fft)
        self.if_weight = float(if_weight)
        self.gd_weight = float(gd_weight)
        self.compress_power = float(compress_power)
        self.eps = float(eps)
        self.key = key
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, hop_length=hop_length, power=None, center=True, pad_mode="reflect"
        )

    @staticmethod
    def _weighted(err: Tensor, w: Tensor) -> Tensor:
        return (err * w).sum(dim=(-2, -1)).div(w.sum(dim=(-2, -1)).clamp(min=1e-8)).mean()

    def forward(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """``{key: scalar}`` for reconstruction ``x_hat`` and reference ``x`` (``[B, C, T]``)."""
        x_hat, x = crop_pair(x_hat, x, type(self).__name__)
        with no_autocast(x.device.type):
            both = torch.cat([_flatten_channels(x_hat), _flatten_channels(x)], dim=0)
            _check_long_enough(both.shape[-1], self.n_fft, type(self).__name__)
            s_hat, s = self.spec(both).chunk(2, dim=0)  # [B, F, T] complex
            mag = s.abs()
            u_hat = s_hat / (s_hat.abs() + self.eps)
            u = s / (mag + self.eps)
            w = mag.pow(self.compress_power)
            total = mag.new_zeros(())
            if self.if_weight:  # phase advance between frames
                err = 1.0 - (u_hat[..., 1:] * u_hat[..., :-1].conj() * (u[..., 1:] * u[..., :-1].conj()).conj()).real
                total = total + self.if_weight * self._weighted(err, torch.minimum(w[..., 1:], w[..., :-1]))
            if self.gd_weight:  # phase difference between neighbouring bins
                err = 1.0 - (u_hat[:, 1:] * u_hat[:, :-1].conj() * (u[:, 1:] * u[:, :-1].conj()).conj()).real
                total = total + self.gd_weight * self._weighted(err, torch.minimum(w[:, 1:], w[:, :-1]))
        return {self.key: total}


class WaveformLoss(nn.Module):
    """L1 on samples, and optionally a frame-wise loudness (RMS in dB) term.

    The loudness term is ``mean_frames |max(L(x_hat), floor) - max(L(x), floor)|`` where
    ``L = 10 log10(mean(x^2) + 1e-10)`` over frames of ``frame_length`` samples. It is measured in dB,
    so a constant gain error of ``g`` dB costs ``|g|`` on every active frame; this counters the 3-10 dB
    quietness that log-domain spectral losses produce (see ``notes/fast-default-measurements.md``).
    Frames quieter than ``floor_db`` in both signals cost nothing.

    See Défossez et al. 2023 (EnCodec) for the waveform L1.

    Args:
        l1_weight: weight of the sample L1 (returned as ``rec/wave``; 0 leaves the key out).
        loudness: also return ``rec/loudness``.
        frame_length: loudness frame in samples.
        hop_length: loudness hop in samples (default ``frame_length // 2``).
        floor_db: loudness floor in dBFS.
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        loudness: bool = False,
        frame_length: int = 1024,
        hop_length: int | None = None,
        floor_db: float = -70.0,
    ):
        super().__init__()
        if frame_length <= 0:
            raise ValueError(f"WaveformLoss: frame_length must be positive, got {frame_length}")
        self.l1_weight = float(l1_weight)
        self.loudness = bool(loudness)
        self.frame_length = int(frame_length)
        self.hop_length = int(hop_length) if hop_length else max(1, self.frame_length // 2)
        self.floor_db = float(floor_db)

    def frame_db(self, x: Tensor) -> Tensor:
        """Frame RMS level in dB, ``[B, C, T] -> [B, C, frames]`` (one frame at least)."""
        x = x.float()
        if x.shape[-1] < self.frame_length:
            x = F.pad(x, (0, self.frame_length - x.shape[-1]))
        ms = F.avg_pool1d(x.square(), kernel_size=self.frame_length, stride=self.hop_length)
        return 10.0 * torch.log10(ms + 1e-10)

    def forward(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            x_hat: reconstruction ``[B, C, T1]``.
            x: reference ``[B, C, T2]``.

        Returns:
            ``{"rec/wave": scalar}`` plus ``"rec/loudness"`` when ``loudness`` is set.
        """
        x_hat, x = crop_pair(x_hat, x, type(self).__name__)
        out: dict[str, Tensor] = {}
        if self.l1_weight:
            out["rec/wave"] = self.l1_weight * F.l1_loss(x_hat.float(), x.float())
        if self.loudness:
            with no_autocast(x.device.type):
                db_hat = self.frame_db(x_hat).clamp(min=self.floor_db)
                db = self.frame_db(x).clamp(min=self.floor_db)
                out["rec/loudness"] = (db_hat - db).abs().mean()
        return out


class PerceptualPESQLoss(nn.Module):
    """A differentiable stand-in for PESQ: ITU P.862's disturbance model as a training loss.

    Wraps ``torch_pesq.PesqLoss`` (audiolabs, MIT), which follows P.862's level alignment, IRS-like
    pre-emphasis, Bark-band power spectra, Zwicker loudness, dead-zoned symmetric and asymmetric
    disturbance and their time aggregation, without P.862's delay search (a codec's output is aligned
    with its input). The magnitude path of an inverse-STFT decoder is then trained on what PESQ weighs:
    loudness per Bark band, added energy (asymmetric) counted more than missing energy, silent frames
    out. Issue 15's magnitude-path lever; see ``conf/loss/pesq.yaml``.

    Args:
        sample_rate: rate of the audio (resampled to 16 kHz inside, as P.862 WB does).
        key: the returned key.
        mos_key: when set, also return the predicted MOS-LQO (detached) under this key, for logging.
    """

    def __init__(self, sample_rate: int = 16000, key: str = "rec/pesq", mos_key: str | None = None):
        super().__init__()
        try:
            from torch_pesq import PesqLoss
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ImportError("PerceptualPESQLoss needs the torch-pesq package (pip install torch-pesq)") from e
        self.pesq = PesqLoss(1.0, sample_rate=int(sample_rate))
        self.sample_rate = int(sample_rate)
        self.key = key
        self.mos_key = mos_key

    def forward(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """``{key: scalar}`` for reconstruction ``x_hat`` and reference ``x`` (``[B, C, T]``)."""
        x_hat, x = crop_pair(x_hat, x, type(self).__name__)
        with no_autocast(x.device.type):
            ref, deg = _flatten_channels(x).float(), _flatten_channels(x_hat).float()
            # P.862 aggregates the disturbance over groups of 20 frames of 512 samples, hop 256, at 16 kHz
            need = int(math.ceil((19 * 256 + 512) * self.sample_rate / 16000))
            if ref.shape[-1] < need:
                raise ValueError(f"{type(self).__name__}: audio of {ref.shape[-1]} samples is too short "
                                 f"(need at least {need}, {need / self.sample_rate:.2f} s: 20 PESQ frames)")
            # clips of digital silence have no level to align: leave them out (PESQ is undefined there)
            live = ref.abs().amax(dim=-1) > 1e-4
            if not bool(live.any()):
                return {self.key: (x_hat * 0.0).sum()}
            loss = self.pesq(ref[live], deg[live]).float().mean()
            out = {self.key: loss}
            if self.mos_key:
                with torch.no_grad():
                    out[self.mos_key] = self.pesq.mos(ref[live], deg[live].detach()).float().mean()
            return out
