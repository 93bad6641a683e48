"""Causal SEANet encoder and decoder built from streaming blocks.

Reference: Tagliasacchi et al., 2020, "SEANet: A Multi-modal Speech Enhancement Network", as used by
SoundStream (Zeghidour et al., 2021), EnCodec (Défossez et al., 2022) and DAC (Kumar et al., 2023).
Each encoder stage is a stack of dilated residual units followed by a strided convolution that
doubles the channels; the decoder mirrors it with transposed convolutions.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from torch import Tensor, nn

from sonotok.modules.streaming import (
    Conv,
    ConvTranspose,
    Stateless,
    StreamingResidual,
    StreamingSequential,
    make_activation,
)


def residual_unit(
    channels: int, dilation: int, kernel_size: int, compress: int, activation: str, norm: str, true_skip: bool
) -> StreamingResidual:
    """Dilated residual unit: act -> conv(k, dilation) -> act -> conv(1), plus a skip."""
    hidden = max(1, channels // compress)
    block = StreamingSequential(
        Stateless(make_activation(activation, channels)),
        Conv(channels, hidden, kernel_size, dilation=dilation, norm=norm),
        Stateless(make_activation(activation, hidden)),
        Conv(hidden, channels, 1, norm=norm),
    )
    shortcut = None if true_skip else Conv(channels, channels, 1, norm=norm)
    return StreamingResidual(block, shortcut)


class SEANetEncoder(nn.Module):
    """Causal SEANet encoder: ``wav [B, C, T] -> latent [B, dimension, ceil(T / hop_length)]``.

    Args:
        channels: audio channels.
        dimension: latent dimension.
        n_filters: channels of the first convolution (doubled at each stage).
        strides: downsampling factors, applied in order (``hop_length`` is their product).
        dilations: dilations of the residual units in every stage.
        kernel_size: kernel of the first convolution.
        last_kernel_size: kernel of the last convolution.
        residual_kernel_size: kernel of the residual units.
        compress: channel reduction inside residual units.
        activation: ``elu``, ``silu``, ``gelu``, ``leaky_relu`` or ``snake``.
        norm: ``weight_norm`` or ``none``.
        true_skip: identity skip in residual units (else a 1x1 conv).
        max_channels: cap on the number of channels.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        strides: Sequence[int] = (2, 4, 5, 8),
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        compress: int = 2,
        activation: str = "elu",
        norm: str = "weight_norm",
        true_skip: bool = True,
        max_channels: int = 1024,
    ):
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.strides = list(strides)
        hop = 1
        for s in self.strides:
            hop *= int(s)
        self.hop_length = hop
        layers: List[nn.Module] = [Conv(channels, n_filters, kernel_size, norm=norm)]
        ch = n_filters
        for stride in self.strides:
            for d in dilations:
                layers.append(residual_unit(ch, d, residual_kernel_size, compress, activation, norm, true_skip))
            out_ch = min(ch * 2, max_channels)
            layers.append(Stateless(make_activation(activation, ch)))
            layers.append(Conv(ch, out_ch, kernel_size=2 * stride, stride=stride, norm=norm))
            ch = out_ch
        layers.append(Stateless(make_activation(activation, ch)))
        layers.append(Conv(ch, dimension, last_kernel_size, norm=norm))
        self.model = StreamingSequential(*layers)
        self.num_states = self.model.num_states

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 3 and x.shape[1] == self.channels, f"expected [B, {self.channels}, T], got {list(x.shape)}"
        return self.model(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.model.step(x, state)


class SEANetDecoder(nn.Module):
    """Causal SEANet decoder: ``latent [B, dimension, F] -> wav [B, C, F * hop_length]``.

    Args mirror :class:`SEANetEncoder`; ``strides`` are given in the encoder's order and applied
    reversed. ``final_activation`` (e.g. ``tanh``) is optional.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        strides: Sequence[int] = (2, 4, 5, 8),
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        compress: int = 2,
        activation: str = "elu",
        norm: str = "weight_norm",
        true_skip: bool = True,
        max_channels: int = 1024,
        final_activation: str | None = None,
    ):
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.strides = list(strides)
        hop = 1
        for s in self.strides:
            hop *= int(s)
        self.hop_length = hop
        widths = [min(n_filters * 2**i, max_channels) for i in range(len(self.strides) + 1)]
        ch = widths[-1]
        layers: List[nn.Module] = [Conv(dimension, ch, kernel_size, norm=norm)]
        for i, stride in enumerate(reversed(self.strides)):
            out_ch = widths[len(self.strides) - 1 - i]
            layers.append(Stateless(make_activation(activation, ch)))
            layers.append(ConvTranspose(ch, out_ch, kernel_size=2 * stride, stride=stride, norm=norm))
            ch = out_ch
            for d in dilations:
                layers.append(residual_unit(ch, d, residual_kernel_size, compress, activation, norm, true_skip))
        layers.append(Stateless(make_activation(activation, ch)))
        layers.append(Conv(ch, channels, last_kernel_size, norm=norm))
        if final_activation == "tanh":
            layers.append(Stateless(nn.Tanh()))
        elif final_activation not in (None, "none"):
            raise ValueError(f"unknown final_activation {final_activation!r}")
        self.model = StreamingSequential(*layers)
        self.num_states = self.model.num_states

    def forward(self, z: Tensor) -> Tensor:
        assert z.dim() == 3 and z.shape[1] == self.dimension, f"expected [B, {self.dimension}, F], got {list(z.shape)}"
        return self.model(z)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def step(self, z: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.model.step(z, state)
