"""Causal ConvNeXt-1D blocks with the streaming protocol.

A block is ``x + gamma * MLP(LayerNorm(DWConv(x)))`` where the depthwise convolution is causal
(left-padded, explicit state, :class:`sonotok.modules.streaming.Conv`) and everything after it is
point-wise (:class:`sonotok.modules.streaming.Stateless`), so streamed output equals offline output for
any chunk size.

References:
    Liu et al., 2022, "A ConvNet for the 2020s" (ConvNeXt).
    Siuzdak, 2023, "Vocos" (ConvNeXt-1D backbone for Fourier-domain audio synthesis).
"""


from typing import List, Tuple

import torch
from torch import Tensor, nn

from sonotok.modules.streaming import Conv, Stateless, StreamingResidual, StreamingSequential


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, T]``."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class Pointwise(nn.Module):
    """1x1 projection of ``[B, C, T]`` (a ``Linear`` over channels; also fine with ``T == 0`` when streaming)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtMLP(nn.Module):
    """Point-wise part of a ConvNeXt block on ``[B, C, T]``: LayerNorm, Linear, GELU, Linear, layer scale.

    Works in ``[B, T, C]`` internally (one transpose pair per block).
    """

    def __init__(self, dim: int, hidden: int, layer_scale: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        h = self.fc2(self.act(self.fc1(self.norm(h))))
        if self.gamma is not None:
            h = h * self.gamma
        return h.transpose(1, 2)


def convnext_block(
    dim: int, kernel_size: int = 7, mlp_ratio: float = 3.0, layer_scale: float = 1e-6, dilation: int = 1
) -> StreamingResidual:
    """One causal ConvNeXt-1D block ``[B, dim, T] -> [B, dim, T]`` following the streaming protocol."""
    return StreamingResidual(
        StreamingSequential(
            Conv(dim, dim, kernel_size, dilation=dilation, groups=dim, norm="none"),
            Stateless(ConvNeXtMLP(dim, int(dim * mlp_ratio), layer_scale)),
        )
    )


class ConvNeXtStack(nn.Module):
    """``num_blocks`` causal ConvNeXt-1D blocks (streaming protocol)."""

    num_states: int

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        layer_scale: float | None = None,
        dilations: List[int] | None = None,
    ):
        super().__init__()
        ls = 1.0 / max(1, num_blocks) if layer_scale is None else layer_scale
        dil = list(dilations) if dilations else [1]
        self.blocks = StreamingSequential(
            *[convnext_block(dim, kernel_size, mlp_ratio, ls, dil[i % len(dil)]) for i in range(num_blocks)]
        )
        self.num_states = self.blocks.num_states

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.blocks.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.blocks.step(x, state)
