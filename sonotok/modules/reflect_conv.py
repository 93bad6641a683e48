"""Causal convolution with EnCodec's reflect padding, and a residual that realigns delayed branches.

EnCodec's causal SEANet (Défossez et al., 2022, "High Fidelity Neural Audio Compression") pads every
convolution on the left by *reflection* (``pad_mode='reflect'``), not with zeros, and reflects the
end of the signal on the right when a strided convolution needs a whole last window. Reproducing the
released checkpoints' codes bit for bit needs the same padding, so :class:`ReflectPadConv1d` does
exactly that offline.

Reflecting the start means that output ``0`` depends on inputs ``1 .. padding``: a look-ahead that
only exists at the very start of a stream. Streaming therefore holds the first outputs back until
``padding + 1`` inputs have arrived, builds the reflection once, and from then on works like a plain
causal convolution (an output as soon as its last input arrives). Streamed outputs are identical to
the offline ones; only the first few outputs of a stream are emitted later. Because one branch of a
residual block may be delayed more than the other at the start, :class:`AlignedResidual` keeps the
early branch's outputs until the other catches up.

Both follow the streaming protocol of :mod:`sonotok.modules.streaming`.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.modules.conv import StreamingConv1d
from sonotok.modules.streaming import Stateless


def reflect_pad(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the last axis, accepting inputs shorter than the padding.

    ``F.pad(mode='reflect')`` needs more samples than the padding; a short input is first extended
    with zeros on the right, reflected, then cut back (EnCodec's ``pad1d``), so any length works.
    """
    if left == 0 and right == 0:
        return x  # F.pad would copy
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        extra = max_pad - length + 1
        x = F.pad(x, [0, extra])
    y = F.pad(x, [left, right], mode="reflect")
    return y[..., : y.shape[-1] - extra]


class ReflectPadConv1d(StreamingConv1d):
    """Causal 1-D convolution padded by reflection (EnCodec's causal ``SConv1d``).

    Offline: left padding ``(kernel - 1) * dilation - (stride - 1)`` and, for strided convolutions,
    the right padding that completes the last window, both by reflection, so
    ``T_out = ceil(T / stride)`` and the values equal EnCodec's for any length.

    Streaming: the state is the unconsumed input and a start flag; see the module docstring. Steps that
    complete only a few output frames use :class:`~sonotok.modules.conv.StreamingConv1d`'s matrix-product
    path (this class is one with another padding).

    Args: those of :class:`~sonotok.modules.conv.StreamingConv1d` (``in_channels``, ``out_channels``,
    ``kernel_size`` (>= stride), ``stride``, ``dilation``, ``groups``, ``bias``, ``norm``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.out_channels = int(self.conv.out_channels)
        kernel_size, dilation, stride = self.kernel_size, self.conv.dilation[0], self.stride
        # EnCodec's (kernel - 1) * dilation - (stride - 1): the same left padding as StreamingConv1d's
        assert self.padding == (kernel_size - 1) * dilation - (stride - 1)
        self.num_states = 2

    def extra_padding(self, length: int) -> int:
        """Right padding that completes the last window (EnCodec's ``get_extra_padding_for_conv1d``)."""
        num = length - self.kernel_size + self.padding
        frames = -((-num) // self.stride) + 1  # ceil(num / stride) + 1
        ideal = (frames - 1) * self.stride + (self.kernel_size - self.padding)
        return ideal - length

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C, T] -> [B, C', ceil(T / stride)]`` with reflect padding on both ends."""
        x = reflect_pad(x, self.padding, self.extra_padding(x.shape[-1]))
        return self._conv(x)

    def init_state(self, batch: int) -> List[Tensor]:
        """``[pending input [B, C, 0], started flag [1]]``: nothing seen yet."""
        w = self._weight()
        return [
            torch.zeros(batch, self.in_channels, 0, device=w.device, dtype=w.dtype),
            torch.zeros(1, dtype=torch.long, device=w.device),
        ]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Process a chunk ``x [B, C, t]`` (any ``t >= 0``); returns every output whose inputs are known."""
        buf = torch.cat([state[0], x], dim=-1)
        started = state[1]
        if int(started[0]) == 0:
            if buf.shape[-1] < self.padding + 1:
                return buf.new_zeros(buf.shape[0], self.out_channels, 0), [buf, started]
            if self.padding > 0:
                buf = F.pad(buf, [self.padding, 0], mode="reflect")
            started = torch.ones_like(started)
        n = (buf.shape[-1] - self.effective_kernel) // self.stride + 1
        if n <= 0:
            return buf.new_zeros(buf.shape[0], self.out_channels, 0), [buf, started]
        used = (n - 1) * self.stride + self.effective_kernel
        if n <= self.small_step_frames:  # a few frames: one matrix product (StreamingConv1d's fast path)
            y = self._conv_few_frames(buf[..., :used])
        else:
            y = self._conv(buf[..., :used])
        return y, [buf[..., n * self.stride :], started]


class AlignedResidual(nn.Module):
    """``y = shortcut(x) + block(x)`` for branches that may emit their first outputs at different times.

    Offline this is a plain residual sum. Streaming keeps the outputs of the branch that is ahead
    (they come in the same order, the other branch only starts later) and adds each pair as soon as
    both sides exist, so streamed sums equal the offline ones.

    Args:
        block: the residual branch (streaming protocol).
        shortcut: the skip branch (streaming protocol), or ``None`` for the identity.
        channels: channels of the sum (for the empty pending buffers).
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module | None, channels: int):
        super().__init__()
        self.block = block
        self.shortcut = shortcut if shortcut is not None else Stateless(nn.Identity())
        self.channels = int(channels)
        self.nb = int(block.num_states)
        self.num_states = self.nb + int(self.shortcut.num_states) + 2
        self.register_buffer("_ref", torch.zeros(0), persistent=False)  # device / dtype of the pending buffers

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)

    def init_state(self, batch: int) -> List[Tensor]:
        empty = torch.zeros(batch, self.channels, 0, device=self._ref.device, dtype=self._ref.dtype)
        return self.block.init_state(batch) + self.shortcut.init_state(batch) + [empty, empty.clone()]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        ns = self.num_states - 2
        yb, sb = self.block.step(x, state[: self.nb])
        ys, ss = self.shortcut.step(x, state[self.nb : ns])
        if state[ns].shape[-1] == 0 and state[ns + 1].shape[-1] == 0 and yb.shape[-1] == ys.shape[-1]:
            return yb + ys, sb + ss + [state[ns], state[ns + 1]]  # aligned (every step after the start)
        pb = torch.cat([state[ns], yb], dim=-1)
        ps = torch.cat([state[ns + 1], ys], dim=-1)
        n = min(pb.shape[-1], ps.shape[-1])
        out = pb[..., :n] + ps[..., :n]
        return out, sb + ss + [pb[..., n:], ps[..., n:]]
