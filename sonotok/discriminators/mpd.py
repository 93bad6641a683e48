"""Multi-period discriminator (HiFi-GAN).

Reference:
    Kong, Kim & Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity Speech
    Synthesis", NeurIPS 2020. Also used by DAC (Kumar et al. 2023) and WavTokenizer (Ji et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.discriminators.common import (
    DiscriminatorOutput,
    check_audio,
    conv_stack,
    normed,
    pow_channels,
    score_all,
)

__all__ = ["PeriodDiscriminator", "MultiPeriodDiscriminator"]


class PeriodDiscriminator(nn.Module):
    """Looks at audio folded into ``[T / p, p]``: 2-D convs with kernels ``(k, 1)`` see every p-th sample.

    Args:
        period: the fold period ``p``.
        channels: width of the first conv; widths grow by ``channel_mult`` per layer.
        max_channels: width cap.
        num_layers: strided conv layers.
        channel_mult: width growth per layer.
        kernel_size: temporal kernel.
        stride: temporal stride of the strided layers.
        use_spectral_norm: spectral instead of weight norm.
        negative_slope: LeakyReLU slope.
    """

    def __init__(
        self,
        period: int,
        channels: int = 32,
        max_channels: int = 1024,
        num_layers: int = 4,
        channel_mult: int = 4,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
        negative_slope: float = 0.1,
    ):
        super().__init__()
        if period < 1:
            raise ValueError(f"PeriodDiscriminator: period must be >= 1, got {period}")
        self.period = int(period)
        self.negative_slope = negative_slope
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList()
        in_ch = 1
        for i in range(num_layers):
            out_ch = pow_channels(channels, channel_mult, i, max_channels)
            conv = nn.Conv2d(in_ch, out_ch, (kernel_size, 1), (stride, 1), padding=(pad, 0))
            self.convs.append(normed(conv, use_spectral_norm))
            in_ch = out_ch
        self.convs.append(
            normed(nn.Conv2d(in_ch, in_ch, (kernel_size, 1), 1, padding=(pad, 0)), use_spectral_norm)
        )
        self.post = normed(nn.Conv2d(in_ch, 1, (3, 1), 1, padding=(1, 0)), use_spectral_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``[B, 1, T]`` -> (logits ``[B, 1, T', p]``, feature maps)."""
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            mode = "reflect" if n_pad < t else "constant"
            x = F.pad(x, (0, n_pad), mode=mode)
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        return conv_stack(x, self.convs, self.post, self.negative_slope)


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (HiFi-GAN uses the primes 2, 3, 5, 7, 11).

    Args:
        periods: fold periods.
        channels: first-layer width of each period discriminator.
        max_channels: width cap.
        num_layers: strided conv layers per period discriminator.
        channel_mult: width growth per layer.
        kernel_size: temporal kernel.
        stride: temporal stride.
        use_spectral_norm: spectral instead of weight norm.

    ``forward(x [B, 1, T])`` returns ``(logits, features)``: ``len(periods)`` logit tensors and as many
    lists of ``num_layers + 2`` feature maps.
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: int = 32,
        max_channels: int = 1024,
        num_layers: int = 4,
        channel_mult: int = 4,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(
                p, channels, max_channels, num_layers, channel_mult, kernel_size, stride, use_spectral_norm
            )
            for p in periods
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Scores audio ``[B, 1, T]``; see the class docstring for the output structure."""
        return score_all(self.discriminators, check_audio(x, type(self).__name__))
