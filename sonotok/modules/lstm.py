"""Streaming LSTM over a convolutional layout (EnCodec's SEANet bottleneck).

Reference: Défossez et al., 2022, "High Fidelity Neural Audio Compression" (EnCodec): a stack of
LSTM layers with a skip connection sits after the last downsampling of the encoder and before the
first upsampling of the decoder. An LSTM is causal by construction; its streaming state is the
hidden and cell state ``(h, c)``, each ``[num_layers, B, dim]``.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn


class StreamingLSTM(nn.Module):
    """``x [B, dim, T] -> lstm(x) (+ x) [B, dim, T]``, offline or chunk by chunk.

    The LSTM runs time-major (``batch_first=False``) as EnCodec's ``SLSTM`` does, so the parameter
    names (``lstm.weight_ih_l0`` ...) and the arithmetic are the same.

    Args:
        dim: channels (input and hidden size).
        num_layers: stacked LSTM layers.
        skip: add the input to the output.
    """

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.skip = bool(skip)
        self.num_states = 2

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(2, 0, 1)
        y, _ = self.lstm(t)
        if self.skip:
            y = y + t
        return y.permute(1, 2, 0)

    def init_state(self, batch: int) -> List[Tensor]:
        """Zero hidden and cell states ``[num_layers, B, dim]`` (what the offline pass starts from)."""
        w = self.lstm.weight_ih_l0
        z = torch.zeros(self.num_layers, batch, self.dim, device=w.device, dtype=w.dtype)
        return [z, z.clone()]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Continue the recurrence over ``x [B, dim, t]`` from ``state``."""
        if x.shape[-1] == 0:
            return x, state
        t = x.permute(2, 0, 1)
        y, (h, c) = self.lstm(t, (state[0], state[1]))
        if self.skip:
            y = y + t
        return y.permute(1, 2, 0), [h, c]
