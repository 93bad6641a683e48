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
        return self.forward_channels_last(x.transpose(1, 2)).transpose(1, 2)

    def forward_channels_last(self, h: Tensor) -> Tensor:
        """The same on ``[B, T, C]``."""
        h = self.fc2(self.act(self.fc1(self.norm(h))))
        if self.gamma is not None:
            h = h * self.gamma
        return h


class _ConvNeXtBody(StreamingSequential):
    """``[depthwise causal Conv, Stateless(ConvNeXtMLP)]``, plus a channels-last streaming step."""

    def step_channels_last(self, h: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        """``h [B, t, C]`` (``t >= 1``) with state ``[B, n, C]`` (the last ``n`` inputs) -> block output, state."""
        conv = self.layers[0].conv  # StreamingConv1d, depthwise, stride 1
        w = conv.conv.weight  # [C, 1, kernel]
        buf = torch.cat([state, h], dim=1)  # [B, n + t, C]
        cols = buf.unfold(1, conv.effective_kernel, 1)  # [B, t, C, effective kernel]
        if conv.dilation > 1:
            cols = cols[..., :: conv.dilation]
        y = (cols * w[:, 0, :]).sum(-1)
        b = conv.conv.bias
        if b is not None:
            y = y + b
        return self.layers[1].module.forward_channels_last(y), buf[:, h.shape[1] :]


class ConvNeXtBlock(StreamingResidual):
    """One causal ConvNeXt-1D block: ``x + MLP(DWConv(x))`` on ``[B, C, T]`` (streaming protocol)."""

    def step_channels_last(self, h: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        y, s = self.block.step_channels_last(h, state)
        return h + y, s


def fold_layer_scale(module: nn.Module) -> nn.Module:
    """Fold every :class:`ConvNeXtMLP`'s layer scale into its second linear, in place (for export).

    ``gamma * (W h + b) == (gamma W) h + gamma b``: one multiply fewer per block and frame.
    """
    for m in module.modules():
        if isinstance(m, ConvNeXtMLP) and m.gamma is not None:
            with torch.no_grad():
                g = m.gamma.detach()
                m.fc2.weight.mul_(g[:, None])
                if m.fc2.bias is not None:
                    m.fc2.bias.mul_(g)
            m.gamma = None
    return module


def convnext_block(
    dim: int, kernel_size: int = 7, mlp_ratio: float = 3.0, layer_scale: float = 1e-6, dilation: int = 1
) -> ConvNeXtBlock:
    """One causal ConvNeXt-1D block ``[B, dim, T] -> [B, dim, T]`` following the streaming protocol."""
    return ConvNeXtBlock(
        _ConvNeXtBody(
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
        """One tensor per block: its last ``(kernel - 1) * dilation`` inputs, channels last ``[B, n, C]``."""
        state: List[Tensor] = []
        for s in self.blocks.init_state(batch):
            state.append(s.transpose(1, 2).contiguous())
        return state

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream ``x [B, C, t]`` through all blocks (equal to ``forward`` on the concatenated chunks).

        A streaming step holds one or two frames, where the cost is the number of operations, not
        arithmetic: the stack transposes once, and each block is a depthwise product over an unfolded
        window, LayerNorm, two linears, GELU and the residual on ``[B, t, C]`` (the blocks' own
        ``step`` does the same work with a transpose pair and a convolution call per block).
        """
        if x.shape[-1] == 0:
            return x, state
        h = x.transpose(1, 2)  # [B, t, C]
        new_state: List[Tensor] = []
        i = 0
        for blk in self.blocks.layers:
            h, s = blk.step_channels_last(h, state[i])
            new_state.append(s)
            i += 1
        return h.transpose(1, 2), new_state
