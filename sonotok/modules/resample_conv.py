"""Learnt causal resampling between frame rates (Mimi's 25 Hz <-> 12.5 Hz convolutions).

Reference: Défossez et al., 2024, "Moshi" (Mimi downsamples the encoder's 25 Hz latent to 12.5 Hz with a
strided convolution of kernel ``2 * stride`` whose left padding *replicates the first frame*, and
upsamples with a depthwise transposed convolution).

* :class:`ReplicateStartConv1d`: causal strided convolution, left-padded with copies of the first input
  frame. The first frame is known as soon as the stream starts, so streaming needs no look-ahead; the
  state is fixed-size (the last ``kernel - stride`` inputs and a started flag).
* :class:`GroupedConvTranspose1d`: causal transposed convolution with groups (depthwise for Mimi) and no
  bias; the state is the overlap tail, as :class:`~sonotok.modules.conv.StreamingConvTranspose1d`.

Both follow the streaming protocol of :mod:`sonotok.modules.streaming`.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ReplicateStartConv1d(nn.Module):
    """Causal strided convolution padded on the left with the first input frame (no bias by default).

    Args:
        in_channels / out_channels: channels.
        kernel_size: kernel (>= stride).
        stride: stride.
        groups: groups.
        bias: whether to use a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1,
                 bias: bool = False):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= stride ({stride})")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = self.kernel_size - self.stride
        self.num_states = 2

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C, T] -> [B, C', ceil(T / stride)]`` (the end is zero-padded to whole strides)."""
        extra = (-x.shape[-1]) % self.stride
        if self.padding > 0:
            x = torch.cat([x[..., :1].expand(x.shape[0], x.shape[1], self.padding), x], dim=-1)
        if extra:
            x = F.pad(x, [0, extra])
        return self.conv(x)

    def init_state(self, batch: int) -> List[Tensor]:
        """``[previous inputs [B, C, padding], started [1]]`` (the padding is filled by the first frame)."""
        w = self.conv.weight
        return [torch.zeros(batch, self.in_channels, self.padding, device=w.device, dtype=w.dtype),
                torch.zeros(1, dtype=torch.long, device=w.device)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        prev, started = state[0], state[1]
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0), state
        # before the first frame the padding is that frame replicated; chosen by value, not by branching, so
        # the step has no data-dependent control flow (torch.export)
        first = x[..., :1].expand(x.shape[0], x.shape[1], prev.shape[-1])
        prev = torch.where(started.view(1, 1, 1) > 0, prev, first)
        started = torch.ones_like(started)
        buf = torch.cat([prev, x], dim=-1)
        n = (buf.shape[-1] - self.kernel_size) // self.stride + 1
        if n <= 0:
            return buf.new_zeros(buf.shape[0], self.out_channels, 0), [buf, started]
        used = (n - 1) * self.stride + self.kernel_size
        y = self.conv(buf[..., :used])
        return y, [buf[..., n * self.stride :], started]


class GroupedConvTranspose1d(nn.Module):
    """Causal transposed convolution with groups, no bias: ``[B, C, T] -> [B, C', T * stride]``.

    Args:
        in_channels / out_channels: channels.
        kernel_size: kernel (>= stride).
        stride: upsampling factor.
        groups: groups (``in_channels`` for depthwise).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= stride ({stride})")
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=False)
        self.out_channels = int(out_channels)
        self.tail = int(kernel_size - stride)
        self.num_states = 1

    def forward(self, x: Tensor) -> Tensor:
        y = self.convtr(x)
        return y[..., : y.shape[-1] - self.tail]

    def init_state(self, batch: int) -> List[Tensor]:
        w = self.convtr.weight
        return [torch.zeros(batch, self.out_channels, self.tail, device=w.device, dtype=w.dtype)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0), state
        y = self.convtr(x)
        if self.tail == 0:
            return y, state
        head = y[..., : self.tail] + state[0]
        y = torch.cat([head, y[..., self.tail :]], dim=-1)
        return y[..., : y.shape[-1] - self.tail], [y[..., y.shape[-1] - self.tail :]]
