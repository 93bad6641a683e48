"""Streaming LSTM over a convolutional layout (EnCodec's SEANet bottleneck).

Reference: Défossez et al., 2022, "High Fidelity Neural Audio Compression" (EnCodec): a stack of
LSTM layers with a skip connection sits after the last downsampling of the encoder and before the
first upsampling of the decoder. An LSTM is causal by construction; its streaming state is the
hidden and cell state ``(h, c)``, each ``[num_layers, B, dim]``.

The weights are stacked per kind (``weight_ih [L, 4 * dim, dim]``, ``weight_hh``, ``bias_ih``,
``bias_hh``, gates in PyTorch's order i, f, g, o). Offline and for long chunks the module runs
PyTorch's fused ``torch.lstm`` (the op behind ``nn.LSTM``, so offline results equal EnCodec's); a
streaming step of a few frames (one frame per call at the codec's frame rate) runs the cell equations
as two matrix products per layer, which avoids the fused op's per-call set-up cost.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

# steps of at most this many frames use the explicit cell equations
_SMALL_STEP_FRAMES = 4


class StreamingLSTM(nn.Module):
    """``x [B, dim, T] -> lstm(x) (+ x) [B, dim, T]``, offline or chunk by chunk.

    The LSTM runs time-major (``batch_first=False``) as EnCodec's ``SLSTM`` does.

    Args:
        dim: channels (input and hidden size).
        num_layers: stacked LSTM layers.
        skip: add the input to the output.
    """

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(dim)  # nn.LSTM's initialisation
        self.weight_ih = nn.Parameter(torch.empty(num_layers, 4 * dim, dim).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(num_layers, 4 * dim, dim).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(num_layers, 4 * dim).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(num_layers, 4 * dim).uniform_(-bound, bound))
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.skip = bool(skip)
        self.num_states = 2
        self.small_step_frames = _SMALL_STEP_FRAMES

    def _params(self) -> List[Tensor]:
        out: List[Tensor] = []
        for i in range(self.num_layers):
            out += [self.weight_ih[i], self.weight_hh[i], self.bias_ih[i], self.bias_hh[i]]
        return out

    def _fused(self, t: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return torch.lstm(t, [h, c], self._params(), True, self.num_layers, 0.0, self.training, False, False)

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(2, 0, 1)
        z = torch.zeros(self.num_layers, x.shape[0], self.dim, device=x.device, dtype=x.dtype)
        y, _, _ = self._fused(t, z, z)
        if self.skip:
            y = y + t
        return y.permute(1, 2, 0)

    def init_state(self, batch: int) -> List[Tensor]:
        """Zero hidden and cell states ``[num_layers, B, dim]`` (what the offline pass starts from)."""
        w = self.weight_ih
        z = torch.zeros(self.num_layers, batch, self.dim, device=w.device, dtype=w.dtype)
        return [z, z.clone()]

    def _cells(self, t: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        hs: List[Tensor] = [h[i] for i in range(self.num_layers)]
        cs: List[Tensor] = [c[i] for i in range(self.num_layers)]
        outs: List[Tensor] = []
        for step in range(t.shape[0]):
            inp = t[step]
            for i in range(self.num_layers):
                gates = torch.addmm(self.bias_ih[i], inp, self.weight_ih[i].t()) + torch.addmm(
                    self.bias_hh[i], hs[i], self.weight_hh[i].t())
                gi, gf, gg, go = gates.chunk(4, dim=-1)
                cs[i] = torch.sigmoid(gf) * cs[i] + torch.sigmoid(gi) * torch.tanh(gg)
                hs[i] = torch.sigmoid(go) * torch.tanh(cs[i])
                inp = hs[i]
            outs.append(inp)
        return torch.stack(outs), torch.stack(hs), torch.stack(cs)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Continue the recurrence over ``x [B, dim, t]`` from ``state``."""
        if x.shape[-1] == 0:
            return x, state
        t = x.permute(2, 0, 1)
        if t.shape[0] <= self.small_step_frames:
            y, h, c = self._cells(t, state[0], state[1])
        else:
            y, h, c = self._fused(t, state[0], state[1])
        if self.skip:
            y = y + t
        return y.permute(1, 2, 0), [h, c]
