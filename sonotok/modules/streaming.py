"""Streaming containers and stateless wrappers.

Every block used in a streaming model implements the same small protocol, which TorchScript and
``torch.export`` can follow:

* ``num_states: int`` (a constant): how many state tensors the block keeps;
* ``init_state(batch) -> List[Tensor]`` (length ``num_states``);
* ``step(x, state) -> (y, new_state)``;
* ``forward(x)``: the offline computation, equal to stepping through all of ``x``.

Containers concatenate their children's states into one flat list.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from sonotok.modules.conv import StreamingConv1d, StreamingConvTranspose1d


class Snake1d(nn.Module):
    """Snake activation ``x + sin^2(alpha x) / alpha`` with a learned per-channel alpha.

    Reference: Ziyin et al., 2020, "Neural Networks Fail to Learn Periodic Functions and How to Fix It";
    used for audio by BigVGAN and DAC.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def make_activation(name: str, channels: int) -> nn.Module:
    """Build an activation by name: ``elu``, ``silu``, ``gelu``, ``leaky_relu`` or ``snake``."""
    if name == "elu":
        return nn.ELU()
    if name == "silu":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)
    if name == "snake":
        return Snake1d(channels)
    raise ValueError(f"unknown activation {name!r}: expected elu, silu, gelu, leaky_relu or snake")


class Stateless(nn.Module):
    """Wraps a point-wise module (activation, 1x1 projection) so it follows the streaming protocol."""


    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.num_states = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return []

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.module(x), state


class Conv(nn.Module):
    """Streaming protocol adapter for :class:`StreamingConv1d` (one state tensor)."""


    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = StreamingConv1d(*args, **kwargs)
        self.num_states = 1

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.conv.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.conv.step(x, state)


class ConvTranspose(nn.Module):
    """Streaming protocol adapter for :class:`StreamingConvTranspose1d` (one state tensor)."""


    def __init__(self, *args, **kwargs):
        super().__init__()
        self.convtr = StreamingConvTranspose1d(*args, **kwargs)
        self.num_states = 1

    def forward(self, x: Tensor) -> Tensor:
        return self.convtr(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.convtr.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.convtr.step(x, state)


class StreamingSequential(nn.Module):
    """A sequence of streaming blocks; its state is the concatenation of the blocks' states."""


    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_states = sum(int(layer.num_states) for layer in layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def init_state(self, batch: int) -> List[Tensor]:
        state: List[Tensor] = []
        for layer in self.layers:
            state.extend(layer.init_state(batch))
        return state

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        new_state: List[Tensor] = []
        i = 0
        for layer in self.layers:
            n = layer.num_states
            x, s = layer.step(x, state[i : i + n])
            new_state.extend(s)
            i += n
        return x, new_state


class StreamingResidual(nn.Module):
    """``y = shortcut(x) + block(x)`` where both branches keep time alignment (stride 1, causal).

    Both branches emit one output per input sample, so chunks stay aligned when streaming.
    """


    def __init__(self, block: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.block = block
        self.shortcut = shortcut if shortcut is not None else Stateless(nn.Identity())
        self.num_states = int(block.num_states) + int(self.shortcut.num_states)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.block.init_state(batch) + self.shortcut.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        nb = self.block.num_states
        y, sb = self.block.step(x, state[:nb])
        r, ss = self.shortcut.step(x, state[nb:])
        return r + y, sb + ss
