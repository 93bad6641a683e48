"""Multi-scale waveform discriminator (MelGAN / HiFi-GAN).

Reference:
    Kumar et al., "MelGAN: Generative Adversarial Networks for Conditional Waveform Synthesis",
    NeurIPS 2019; Kong et al., "HiFi-GAN", NeurIPS 2020.
"""

from __future__ import annotations

from torch import Tensor, nn

from sonotok.discriminators.common import DiscriminatorOutput, check_audio, conv_stack, normed, pow_channels

__all__ = ["ScaleDiscriminator", "MultiScaleDiscriminator"]


def _groups(in_ch: int, out_ch: int, group_div: int, max_groups: int) -> int:
    g = max(1, min(in_ch // group_div, max_groups))
    while in_ch % g or out_ch % g:
        g -= 1
    return g


class ScaleDiscriminator(nn.Module):
    """1-D conv stack on the waveform with large grouped strided kernels.

    Args:
        channels: width of the first conv.
        max_channels: width cap.
        num_downsample: strided grouped conv layers.
        downsample: stride (and width growth) of those layers.
        kernel_size: kernel of the strided layers.
        first_kernel_size: kernel of the first conv.
        group_div: groups = ``in_channels // group_div`` (capped by ``max_groups``).
        max_groups: group cap.
        use_spectral_norm: spectral instead of weight norm.
        negative_slope: LeakyReLU slope.
    """

    def __init__(
        self,
        channels: int = 16,
        max_channels: int = 1024,
        num_downsample: int = 4,
        downsample: int = 4,
        kernel_size: int = 41,
        first_kernel_size: int = 15,
        group_div: int = 4,
        max_groups: int = 256,
        use_spectral_norm: bool = False,
        negative_slope: float = 0.1,
    ):
        super().__init__()
        self.negative_slope = negative_slope
        self.convs = nn.ModuleList(
            [normed(nn.Conv1d(1, channels, first_kernel_size, 1, first_kernel_size // 2), use_spectral_norm)]
        )
        in_ch = channels
        for i in range(num_downsample):
            out_ch = pow_channels(channels, downsample, i + 1, max_channels)
            g = _groups(in_ch, out_ch, group_div, max_groups)
            conv = nn.Conv1d(in_ch, out_ch, kernel_size, downsample, kernel_size // 2, groups=g)
            self.convs.append(normed(conv, use_spectral_norm))
            in_ch = out_ch
        self.convs.append(normed(nn.Conv1d(in_ch, in_ch, 5, 1, 2), use_spectral_norm))
        self.post = normed(nn.Conv1d(in_ch, 1, 3, 1, 1), use_spectral_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``[B, 1, T]`` -> (logits ``[B, 1, T']``, feature maps)."""
        return conv_stack(x, self.convs, self.post, self.negative_slope)


class MultiScaleDiscriminator(nn.Module):
    """:class:`ScaleDiscriminator` on the raw waveform and on 2x, 4x, ... average-pooled versions.

    Args:
        num_scales: number of scales (scale ``i`` sees audio pooled ``i`` times by 2).
        channels: first-layer width.
        max_channels: width cap.
        num_downsample: strided layers per scale discriminator.
        downsample: their stride / width growth.
        kernel_size: their kernel.
        max_groups: group cap.
        use_spectral_norm: spectral norm on every scale.
        spectral_norm_first_scale: spectral norm on the raw-waveform scale only (HiFi-GAN).

    ``forward(x [B, 1, T])`` returns ``(logits, features)`` with ``num_scales`` entries each.
    """

    def __init__(
        self,
        num_scales: int = 3,
        channels: int = 16,
        max_channels: int = 1024,
        num_downsample: int = 4,
        downsample: int = 4,
        kernel_size: int = 41,
        max_groups: int = 256,
        use_spectral_norm: bool = False,
        spectral_norm_first_scale: bool = True,
    ):
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"MultiScaleDiscriminator: num_scales must be >= 1, got {num_scales}")
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(
                channels=channels,
                max_channels=max_channels,
                num_downsample=num_downsample,
                downsample=downsample,
                kernel_size=kernel_size,
                max_groups=max_groups,
                use_spectral_norm=use_spectral_norm or (spectral_norm_first_scale and i == 0),
            )
            for i in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Scores audio ``[B, 1, T]``; see the class docstring for the output structure."""
        x = check_audio(x, type(self).__name__)
        logits, features = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x)
            lg, ft = d(x)
            logits.append(lg)
            features.append(ft)
        return logits, features
