"""Multi-resolution magnitude-spectrogram discriminator (UnivNet, Vocos, WavTokenizer).

Reference:
    Jang et al., "UnivNet: A Neural Vocoder with Multi-Resolution Spectrogram Discriminators for
    High-Fidelity Waveform Generation", Interspeech 2021; Siuzdak, "Vocos", ICLR 2024; Ji et al.,
    "WavTokenizer", ICLR 2025.
"""

from __future__ import annotations

from collections.abc import Sequence

import torchaudio
from torch import Tensor, nn

from sonotok.discriminators.common import DiscriminatorOutput, check_audio, conv_stack, normed, score_all

__all__ = ["ResolutionDiscriminator", "MultiResolutionDiscriminator"]


class ResolutionDiscriminator(nn.Module):
    """2-D conv stack on a linear magnitude spectrogram ``[B, 1, freq, frames]``.

    The strided layers halve the time axis (UnivNet layout).

    Args:
        n_fft: FFT size.
        hop_length: hop.
        win_length: Hann window length.
        channels: conv width.
        num_layers: strided layers.
        negative_slope: LeakyReLU slope.
        use_spectral_norm: spectral instead of weight norm.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        channels: int = 32,
        num_layers: int = 3,
        negative_slope: float = 0.1,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        self.n_fft = int(n_fft)
        self.negative_slope = negative_slope
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            power=1.0,
            center=True,
            pad_mode="constant",
        )
        self.convs = nn.ModuleList(
            [normed(nn.Conv2d(1, channels, (3, 9), padding=(1, 4)), use_spectral_norm)]
        )
        for _ in range(num_layers):
            conv = nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))
            self.convs.append(normed(conv, use_spectral_norm))
        self.convs.append(normed(nn.Conv2d(channels, channels, 3, padding=1), use_spectral_norm))
        self.post = normed(nn.Conv2d(channels, 1, 3, padding=1), use_spectral_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``[B, 1, T]`` -> (logits ``[B, 1, freq, frames']``, feature maps)."""
        z = self.spec(x.float()).to(x.dtype)  # [B, 1, freq, frames]
        return conv_stack(z, self.convs, self.post, self.negative_slope)


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per ``(n_fft, hop, win)`` resolution.

    Args:
        resolutions: ``[(n_fft, hop_length, win_length), ...]``; Vocos/WavTokenizer use
            ``(1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)``.
        channels: conv width.
        num_layers: strided layers per resolution.
        use_spectral_norm: spectral instead of weight norm.

    ``forward(x [B, 1, T])`` returns ``(logits, features)`` with ``len(resolutions)`` entries each.
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        channels: int = 32,
        num_layers: int = 3,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        if not resolutions:
            raise ValueError("MultiResolutionDiscriminator: needs at least one resolution")
        for r in resolutions:
            if len(r) != 3:
                raise ValueError(f"MultiResolutionDiscriminator: resolution {r} is not (n_fft, hop, win)")
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(
                int(n), int(h), int(w), channels, num_layers, use_spectral_norm=use_spectral_norm
            )
            for n, h, w in resolutions
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Scores audio ``[B, 1, T]``; see the class docstring for the output structure."""
        return score_all(self.discriminators, check_audio(x, type(self).__name__))
