"""Training-data augmentation: room reverberation (pyroomacoustics), additive music/noise at an SNR, gain,
band-limiting. Every effect is off unless its probability is above 0, so a preset opts into each one.

:class:`Augmentation` is a plain callable ``(wav [C, T], sample_rate, rng) -> wav [C, T]``; the dataset
passes a generator seeded per ``(seed, epoch, index)``, so an augmented crop is reproducible. Room impulse
responses come from a bank simulated once per process (image-source shoebox rooms, RT60 drawn from
``rt60``), which keeps the cost per crop at one FFT convolution.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

from sonotok.data.audio import resample
from sonotok.errors import SonotokError

__all__ = ["Augmentation", "rir_bank"]


@functools.lru_cache(maxsize=8)
def rir_bank(sample_rate: int, count: int = 32, rt60: tuple[float, float] = (0.2, 0.8), seed: int = 0) -> tuple:
    """``count`` simulated room impulse responses (float32 arrays, direct path at index 0, unit energy),
    cached per process.

    Rooms are shoeboxes of 3-10 x 3-8 x 2.5-4 m with wall absorption from Sabine's formula for an RT60 drawn
    uniformly in ``rt60``; source and microphone at random positions at least 0.5 m from the walls.

    Raises:
        SonotokError: pyroomacoustics is not installed.
    """
    try:
        import pyroomacoustics as pra
    except ImportError as e:
        raise SonotokError("reverberation needs the PyPI package pyroomacoustics: pip install pyroomacoustics") from e
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        dim = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.5, 4)])
        t60 = float(rng.uniform(*rt60))
        try:
            absorption, max_order = pra.inverse_sabine(t60, dim)
        except ValueError:  # RT60 unreachable for this room: draw another
            continue
        room = pra.ShoeBox(dim, fs=int(sample_rate), materials=pra.Material(absorption),
                           max_order=int(min(max_order, 12)), use_rand_ism=False, air_absorption=False)
        room.add_source((rng.uniform(0.5, 1, 3) * (dim - 1.0) + 0.5).tolist())
        room.add_microphone((rng.uniform(0, 1, 3) * (dim - 1.0) + 0.5).tolist())
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        h = h[int(np.argmax(np.abs(h))):]  # start at the direct path: the reverberant signal stays aligned
        h = h[: int(1.2 * t60 * sample_rate) + 1]
        out.append((h / np.sqrt(np.sum(h**2) + 1e-12)).astype(np.float32))
    return tuple(out)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


class Augmentation:
    """Randomly applied effects for training crops (each off by default).

    Args:
        reverb_prob: probability of convolving with a simulated room (:func:`rir_bank`).
        rt60: RT60 range of the simulated rooms (s).
        noise_prob: probability of adding noise at an SNR drawn from ``snr_db``.
        snr_db: ``[low, high]`` signal-to-noise ratio (dB).
        noise_kinds: what noise is drawn from: ``"white"``, ``"pink"``, ``"brown"``, ``"music"`` (the Asterisk
            hold music, :func:`sonotok.data.mixtures.load_music`).
        gain_prob: probability of a gain drawn from ``gain_db`` (peaks kept below 0.99).
        gain_db: ``[low, high]`` gain (dB).
        bandlimit_prob: probability of band-limiting: resampling down to a rate from ``bandlimit_rates`` and back.
        bandlimit_rates: the intermediate rates (8000 keeps 0-4 kHz, as a telephone line).
        rir_count: size of the impulse-response bank.
    """

    def __init__(self, reverb_prob: float = 0.0, rt60: Sequence[float] = (0.2, 0.8), noise_prob: float = 0.0,
                 snr_db: Sequence[float] = (5.0, 30.0), noise_kinds: Sequence[str] = ("white", "pink", "brown", "music"),
                 gain_prob: float = 0.0, gain_db: Sequence[float] = (-12.0, 6.0), bandlimit_prob: float = 0.0,
                 bandlimit_rates: Sequence[int] = (8000, 11025, 12000), rir_count: int = 32):
        bad = set(noise_kinds) - {"white", "pink", "brown", "music"}
        if bad:
            raise ValueError(f"unknown noise kinds {sorted(bad)}; choose from white, pink, brown, music")
        for name, p in (("reverb_prob", reverb_prob), ("noise_prob", noise_prob), ("gain_prob", gain_prob),
                        ("bandlimit_prob", bandlimit_prob)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.reverb_prob = float(reverb_prob)
        self.rt60 = (float(rt60[0]), float(rt60[1]))
        self.noise_prob = float(noise_prob)
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.noise_kinds = tuple(noise_kinds)
        self.gain_prob = float(gain_prob)
        self.gain_db = (float(gain_db[0]), float(gain_db[1]))
        self.bandlimit_prob = float(bandlimit_prob)
        self.bandlimit_rates = tuple(int(r) for r in bandlimit_rates)
        self.rir_count = int(rir_count)

    @property
    def enabled(self) -> bool:
        return any(p > 0 for p in (self.reverb_prob, self.noise_prob, self.gain_prob, self.bandlimit_prob))

    def reverb(self, wav: torch.Tensor, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
        """Convolve ``[C, T]`` with one impulse response of the bank (same length, RMS kept)."""
        bank = rir_bank(int(sample_rate), self.rir_count, self.rt60)
        h = torch.from_numpy(bank[int(rng.integers(len(bank)))])
        t = wav.shape[-1]
        n = t + h.numel() - 1
        y = torch.fft.irfft(torch.fft.rfft(wav, n) * torch.fft.rfft(h, n), n)[..., :t]
        r_in, r_out = _rms(wav), _rms(y)
        return y * (r_in / r_out) if r_out > 0 else y

    def noise(self, wav: torch.Tensor, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
        """Add noise of a random kind at a random SNR."""
        from sonotok.data.mixtures import load_music, synthetic_noise

        t = wav.shape[-1]
        kind = self.noise_kinds[int(rng.integers(len(self.noise_kinds)))]
        music = load_music(int(sample_rate)) if kind == "music" else ()
        if kind == "music" and music:
            track = music[int(rng.integers(len(music)))]
            start = int(rng.integers(max(1, track.numel() - t)))
            n = torch.zeros(t)
            seg = track[start: start + t]
            n[: seg.numel()] = seg
        else:
            n = torch.from_numpy(synthetic_noise(rng, t, kind if kind != "music" else "pink"))
        snr = float(rng.uniform(*self.snr_db))
        rs, rn = _rms(wav), _rms(n)
        if rs == 0 or rn == 0:
            return wav
        return wav + n.to(wav.dtype) * (rs / rn * 10 ** (-snr / 20))

    def __call__(self, wav: torch.Tensor, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
        """Apply the enabled effects to ``[C, T]`` audio (order: reverb, band-limit, noise, gain)."""
        if wav.dim() != 2:
            raise ValueError(f"Augmentation expects [C, T] audio, got shape {tuple(wav.shape)}")
        if self.reverb_prob and rng.random() < self.reverb_prob:
            wav = self.reverb(wav, sample_rate, rng)
        if self.bandlimit_prob and rng.random() < self.bandlimit_prob:
            low = [r for r in self.bandlimit_rates if r < sample_rate]
            if low:
                r = low[int(rng.integers(len(low)))]
                t = wav.shape[-1]
                y = resample(resample(wav, sample_rate, r), r, sample_rate)[..., :t]
                wav = torch.nn.functional.pad(y, (0, t - y.shape[-1]))
        if self.noise_prob and rng.random() < self.noise_prob:
            wav = self.noise(wav, sample_rate, rng)
        if self.gain_prob and rng.random() < self.gain_prob:
            wav = wav * 10 ** (float(rng.uniform(*self.gain_db)) / 20)
        peak = float(wav.abs().max()) if wav.numel() else 0.0
        if peak > 0.99:
            wav = wav * (0.99 / peak)
        return wav.contiguous()
