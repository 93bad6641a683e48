"""Temporal convolutional network (TCN) blocks and the layer norms of Conv-TasNet.

Reference: Luo & Mesgarani, 2019, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for
Speech Separation" (IEEE/ACM TASLP), section II-D and figure 1(c).

Norms (all on ``[B, C, T]``):

* ``gln``: global layer norm over channels *and* time (offline only; ``GroupNorm(1, C)``, as torchaudio);
* ``cln``: cumulative layer norm: frame ``t`` is normalised with the mean/variance of all channels of
  frames ``0..t`` (causal; streams with three state tensors: running sum, sum of squares and count);
* ``channel``: per-frame layer norm over channels only (causal, stateless);
* ``none``.

Every block follows the streaming protocol of :mod:`sonotok.modules.streaming` when it is causal
(``num_states``, ``init_state(batch)``, ``step(x, state)``); the non-causal ones raise on ``step``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from sonotok.modules.streaming import Conv, Stateless, StreamingSequential

NORMS = ("gln", "cln", "channel", "none")


class GlobalLayerNorm(nn.Module):
    """gLN: normalise over channels and time with a per-channel affine (``GroupNorm(1, C)``)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, eps=eps)
        self.num_states = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return []

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise RuntimeError("global layer norm (gln) looks at the whole signal and cannot stream: use cln or channel")


class ChannelLayerNorm(nn.Module):
    """Per-frame layer norm over channels (causal, stateless)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps
        self.num_states = 0

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def init_state(self, batch: int) -> List[Tensor]:
        return []

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.forward(x), state


class CumulativeLayerNorm(nn.Module):
    """cLN: frame ``t`` normalised by the statistics of all channels of frames ``0..t``.

    State (streaming): ``[sum, sum_of_squares, count]``, each ``[B, 1, 1]`` (float64 would be safer for
    hours of audio; float32 is exact enough for utterances and keeps export simple).
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.channels = channels
        self.eps = eps
        self.num_states = 3

    def _normalise(self, x: Tensor, s0: Tensor, q0: Tensor, n0: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        frame_sum = x.sum(dim=1, keepdim=True)  # [B, 1, t]
        frame_sq = x.pow(2).sum(dim=1, keepdim=True)
        cum_sum = s0 + torch.cumsum(frame_sum, dim=-1)
        cum_sq = q0 + torch.cumsum(frame_sq, dim=-1)
        steps = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype).view(1, 1, -1)
        count = n0 + steps * self.channels
        mean = cum_sum / count
        var = (cum_sq / count - mean.pow(2)).clamp_min(0.0)
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return y, cum_sum[..., -1:], cum_sq[..., -1:], count[..., -1:]

    def forward(self, x: Tensor) -> Tensor:
        z = x.new_zeros(x.shape[0], 1, 1)
        y, _, _, _ = self._normalise(x, z, z, z)
        return y

    def init_state(self, batch: int) -> List[Tensor]:
        w = self.weight
        return [torch.zeros(batch, 1, 1, device=w.device, dtype=w.dtype) for _ in range(3)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        if x.shape[-1] == 0:
            return x, state
        y, s, q, n = self._normalise(x, state[0], state[1], state[2])
        return y, [s, q, n]


def make_norm(name: str, channels: int) -> nn.Module:
    """Build a TCN norm by name: ``gln``, ``cln``, ``channel`` or ``none``."""
    if name == "gln":
        return GlobalLayerNorm(channels)
    if name == "cln":
        return CumulativeLayerNorm(channels)
    if name == "channel":
        return ChannelLayerNorm(channels)
    if name == "none":
        return Stateless(nn.Identity())
    raise ValueError(f"unknown norm {name!r}: expected one of {NORMS}")


class SymmetricConv(nn.Module):
    """Non-causal depthwise/regular conv with symmetric 'same' padding (offline only)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, groups: int):
        super().__init__()
        if (kernel_size - 1) * dilation % 2:
            raise ValueError(f"non-causal conv needs an even receptive field; kernel {kernel_size} dilation {dilation}")
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) * dilation // 2,
                              dilation=dilation, groups=groups)
        self.num_states = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return []

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise RuntimeError("a non-causal TCN cannot stream: build it with causal=True")


def _conv_weight(m: nn.Module) -> nn.Conv1d:
    """The ``nn.Conv1d`` inside a streaming ``Conv`` or a ``SymmetricConv``."""
    if isinstance(m, Conv):
        return m.conv.conv
    return m.conv


class TCNBlock(nn.Module):
    """One Conv-TasNet 1-D conv block: 1x1 -> PReLU -> norm -> depthwise dilated -> PReLU -> norm, then
    a residual 1x1 (absent in the very last block) and a skip-connection 1x1.

    ``forward(x [B, B_ch, T]) -> (residual or None-as-empty, skip)``; both ``[B, B_ch, T]``.

    Args:
        io_channels: bottleneck channels ``B`` (and skip channels ``Sc``, equal here as in the paper).
        hidden_channels: ``H``.
        kernel_size: ``P``.
        dilation: dilation of the depthwise conv.
        norm: ``gln``/``cln``/``channel``/``none``.
        causal: left padding (streamable) instead of symmetric padding.
        residual: whether this block has a residual output.
    """

    def __init__(self, io_channels: int, hidden_channels: int, kernel_size: int, dilation: int, norm: str,
                 causal: bool, residual: bool = True):
        super().__init__()
        if causal:
            dconv: nn.Module = Conv(hidden_channels, hidden_channels, kernel_size, dilation=dilation,
                                    groups=hidden_channels, norm="none")
        else:
            dconv = SymmetricConv(hidden_channels, kernel_size, dilation, hidden_channels)
        self.body = StreamingSequential(
            Stateless(nn.Conv1d(io_channels, hidden_channels, 1)),
            Stateless(nn.PReLU()),
            make_norm(norm, hidden_channels),
            dconv,
            Stateless(nn.PReLU()),
            make_norm(norm, hidden_channels),
        )
        self.has_residual = bool(residual)
        self.res_out = nn.Conv1d(hidden_channels, io_channels, 1) if residual else None
        self.skip_out = nn.Conv1d(hidden_channels, io_channels, 1)
        self.num_states = int(self.body.num_states)

    def _heads(self, h: Tensor) -> Tuple[Tensor, Tensor]:
        skip = self.skip_out(h)
        res_out = self.res_out
        if res_out is not None:
            return res_out(h), skip
        return torch.zeros_like(skip), skip

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return self._heads(self.body(x))

    def init_state(self, batch: int) -> List[Tensor]:
        return self.body.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        h, state = self.body.step(x, state)
        r, s = self._heads(h)
        return r, s, state


class TCN(nn.Module):
    """Stacks of TCN blocks with dilations ``1, 2, ..., 2^(X-1)`` repeated ``R`` times; returns the sum of
    the skip connections. ``[B, B_ch, T] -> [B, B_ch, T]``.

    Args:
        channels: ``B``.
        hidden_channels: ``H``.
        kernel_size: ``P``.
        num_layers: ``X`` blocks per stack.
        num_stacks: ``R``.
        norm: block norm.
        causal: causal (streamable) convolutions.
    """

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, num_layers: int, num_stacks: int,
                 norm: str = "gln", causal: bool = False):
        super().__init__()
        blocks = []
        for s in range(num_stacks):
            for i in range(num_layers):
                last = s == num_stacks - 1 and i == num_layers - 1
                blocks.append(TCNBlock(channels, hidden_channels, kernel_size, 2**i, norm, causal, residual=not last))
        self.blocks = nn.ModuleList(blocks)
        self.num_states = sum(int(b.num_states) for b in blocks)
        self.receptive_field = 1 + sum((kernel_size - 1) * 2**i for _ in range(num_stacks) for i in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        out: Optional[Tensor] = None
        for b in self.blocks:
            r, s = b(x)
            x = x + r
            out = s if out is None else out + s
        assert out is not None
        return out

    def init_state(self, batch: int) -> List[Tensor]:
        state: List[Tensor] = []
        for b in self.blocks:
            state.extend(b.init_state(batch))
        return state

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        new_state: List[Tensor] = []
        out = torch.zeros_like(x)
        i = 0
        for b in self.blocks:
            n = b.num_states
            r, s, st = b.step(x, state[i : i + n])
            new_state.extend(st)
            i += n
            x = x + r
            out = out + s
        return out, new_state
