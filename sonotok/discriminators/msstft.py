"""Multi-scale complex STFT discriminator (EnCodec).

Reference:
    Défossez, Copet, Synnaeve & Adi, "High Fidelity Neural Audio Compression" (EnCodec), TMLR 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from sonotok.discriminators.common import (
    DiscriminatorOutput,
    check_audio,
    conv_stack,
    normed,
    pow_channels,
    score_all,
)

__all__ = ["STFTDiscriminator", "MultiScaleSTFTDiscriminator"]


class STFTDiscriminator(nn.Module):
    """2-D conv stack on the complex STFT (real and imaginary parts as two channels).

    The input is laid out ``[B, 2, frames, freq]``; the strided layers halve the frequency axis and
    dilate along time (1, 2, 4, ...), as in EnCodec.

    Args:
        n_fft: FFT size.
        hop_length: hop.
        win_length: Hann window length.
        filters: base width.
        max_filters: width cap.
        filters_scale: width growth per strided layer (EnCodec: 1, constant width).
        dilations: time dilations of the strided layers.
        kernel_size: ``(time, freq)`` kernel.
        negative_slope: LeakyReLU slope.
        use_spectral_norm: spectral instead of weight norm.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        filters: int = 32,
        max_filters: int = 1024,
        filters_scale: int = 1,
        dilations: Sequence[int] = (1, 2, 4),
        kernel_size: tuple[int, int] = (3, 9),
        negative_slope: float = 0.2,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.negative_slope = negative_slope
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            power=None,
            normalized=True,
            center=False,
        )
        kt, kf = kernel_size
        self.convs = nn.ModuleList(
            [normed(nn.Conv2d(2, filters, kernel_size, padding=(kt // 2, kf // 2)), use_spectral_norm)]
        )
        in_ch = filters
        for i, d in enumerate(dilations):
            out_ch = pow_channels(filters, filters_scale, i + 1, max_filters)
            conv = nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size,
                stride=(1, 2),
                dilation=(d, 1),
                padding=((kt - 1) * d // 2, kf // 2),
            )
            self.convs.append(normed(conv, use_spectral_norm))
            in_ch = out_ch
        self.convs.append(
            normed(nn.Conv2d(in_ch, in_ch, (kt, kt), padding=(kt // 2, kt // 2)), use_spectral_norm)
        )
        self.post = normed(nn.Conv2d(in_ch, 1, (kt, kt), padding=(kt // 2, kt // 2)), use_spectral_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``[B, 1, T]`` -> (logits ``[B, 1, frames, F']``, feature maps)."""
        if x.shape[-1] < self.n_fft:
            x = F.pad(x, (0, self.n_fft - x.shape[-1]))
        z = self.spec(x.squeeze(1).float())  # [B, freq, frames] complex
        z = torch.stack([z.real, z.imag], dim=1).transpose(-1, -2).to(x.dtype)  # [B, 2, frames, freq]
        return conv_stack(z, self.convs, self.post, self.negative_slope)


class MultiScaleSTFTDiscriminator(nn.Module):
    """One :class:`STFTDiscriminator` per STFT resolution (EnCodec: n_fft 1024, 2048, 512).

    Args:
        n_ffts: FFT sizes.
        hop_lengths: hops (default ``n_fft // 4``).
        win_lengths: window lengths (default ``n_fft``).
        filters: base width.
        max_filters: width cap.
        filters_scale: width growth per strided layer.
        dilations: time dilations of the strided layers.
        use_spectral_norm: spectral instead of weight norm.

    ``forward(x [B, 1, T])`` returns ``(logits, features)`` with ``len(n_ffts)`` entries each.
    """

    def __init__(
        self,
        n_ffts: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        filters: int = 32,
        max_filters: int = 1024,
        filters_scale: int = 1,
        dilations: Sequence[int] = (1, 2, 4),
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        hops = [n // 4 for n in n_ffts] if hop_lengths is None else list(hop_lengths)
        wins = list(n_ffts) if win_lengths is None else list(win_lengths)
        if not (len(n_ffts) == len(hops) == len(wins)) or not n_ffts:
            raise ValueError(
                f"MultiScaleSTFTDiscriminator: n_ffts {list(n_ffts)}, hop_lengths {hops} and win_lengths "
                f"{wins} need the same non-zero length"
            )
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(
                n, h, w, filters, max_filters, filters_scale, dilations, use_spectral_norm=use_spectral_norm
            )
            for n, h, w in zip(n_ffts, hops, wins)
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Scores audio ``[B, 1, T]``; see the class docstring for the output structure."""
        return score_all(self.discriminators, check_audio(x, type(self).__name__))
