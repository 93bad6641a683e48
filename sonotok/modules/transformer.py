"""Causal streaming transformer with rotary positions and a bounded attention context (Mimi's).

Reference: Défossez et al., 2024, "Moshi: a speech-text foundation model for real-time dialogue" (the
Mimi codec puts an 8-layer causal transformer after its SEANet encoder and before its decoder); rotary
embeddings from Su et al., 2021, "RoFormer"; layer scale from Touvron et al., 2021, "Going deeper with
image transformers".

Each layer is pre-norm: ``x + ls1 * attn(norm1(x))`` then ``x + ls2 * ff(norm2(x))`` with a GELU
feed-forward, bias-free projections and RoPE (interleaved pairs) on queries and keys. A query at
position ``p`` attends to keys ``p - context + 1 .. p``.

Streaming state is explicit and of fixed shape: per layer the keys and values of the last
``context - 1`` positions (``[B, heads, context - 1, head_dim]``), and one position counter for the
stack. A step of ``t`` frames concatenates the cached and new keys and masks what is out of context or
before the stream start, so streamed outputs equal the offline ones for any chunking (the whole context
is always available, also for the first frame of a multi-frame step).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def apply_rope(q: Tensor, k: Tensor, offset: Tensor, max_period: float) -> Tuple[Tensor, Tensor]:
    """Rotate interleaved (real, imaginary) pairs of ``q``, ``k`` ``[B, H, T, D]`` by their positions.

    Positions are ``offset + 0 .. T-1``; the angles are computed in float32 as ``t * max_period ** (-2i / D)``.
    """
    b, h, t, d = q.shape
    ds = torch.arange(d // 2, device=q.device, dtype=torch.float32)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / d))
    ts = offset.float().view(-1, 1) + torch.arange(t, device=q.device, dtype=torch.float32)
    ts = ts.view(ts.shape[0], 1, -1, 1)
    rotr = torch.cos(freqs * ts)
    roti = torch.sin(freqs * ts)
    q2 = q.view(b, h, t, d // 2, 2)
    k2 = k.view(b, h, t, d // 2, 2)
    qr, qi = q2[..., 0].float(), q2[..., 1].float()
    kr, ki = k2[..., 0].float(), k2[..., 1].float()
    qo = torch.stack([qr * rotr - qi * roti, qr * roti + qi * rotr], dim=-1).view(b, h, t, d)
    ko = torch.stack([kr * rotr - ki * roti, kr * roti + ki * rotr], dim=-1).view(b, h, t, d)
    return qo.to(q.dtype), ko.to(k.dtype)


class LayerScale(nn.Module):
    """Per-channel residual scale (channels last)."""

    def __init__(self, channels: int, init: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE and a context window (no biases).

    Args:
        dim: model dimension.
        num_heads: heads.
        context: keys per query (the query's own position included).
        max_period: RoPE maximum period.
    """

    def __init__(self, dim: int, num_heads: int, context: int, max_period: float = 10000.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.head_dim = dim // num_heads
        self.context = int(context)
        self.max_period = float(max_period)

    def _qkv(self, x: Tensor, offset: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        qkv = self.in_proj(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[0], qkv[1], offset, self.max_period)
        return q, k, qkv[2]

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, pos_q: Tensor, pos_k: Tensor) -> Tensor:
        b, _, t, _ = q.shape
        delta = pos_q.view(-1, 1) - pos_k.view(1, -1)
        mask = (pos_k.view(1, -1) >= 0) & (delta >= 0) & (delta < self.context)
        mask = mask.view(1, 1, t, -1).expand(b, 1, t, mask.shape[-1])
        y = F.scaled_dot_product_attention(q, k, v, mask, dropout_p=0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, self.dim))

    def forward(self, x: Tensor) -> Tensor:
        """Offline: ``x [B, T, dim]`` from position 0."""
        t = x.shape[1]
        zero = torch.zeros(1, dtype=torch.long, device=x.device)
        q, k, v = self._qkv(x, zero)
        pos = torch.arange(t, device=x.device)
        return self._attend(q, k, v, pos, pos)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> List[Tensor]:
        z = torch.zeros(batch, self.num_heads, self.context - 1, self.head_dim, device=device, dtype=dtype)
        return [z, z.clone()]

    def step(self, x: Tensor, offset: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """``x [B, t, dim]`` at positions ``offset ..``; state = cached keys and values of the previous
        ``context - 1`` positions (entries before position 0 are masked)."""
        t = x.shape[1]
        q, k, v = self._qkv(x, offset)
        k_all = torch.cat([state[0], k], dim=2)
        v_all = torch.cat([state[1], v], dim=2)
        start = offset - (self.context - 1)
        pos_k = start + torch.arange(k_all.shape[2], device=x.device)
        pos_q = offset + torch.arange(t, device=x.device)
        y = self._attend(q, k_all, v_all, pos_q, pos_k)
        keep = self.context - 1
        return y, [k_all[:, :, k_all.shape[2] - keep :], v_all[:, :, v_all.shape[2] - keep :]]


class TransformerLayer(nn.Module):
    """Pre-norm layer: attention and GELU feed-forward, each with an optional layer scale."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, context: int, max_period: float,
                 layer_scale: Optional[float], norm_eps: float = 1e-5):
        super().__init__()
        self.self_attn = CausalSelfAttention(dim, num_heads, context, max_period)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.linear1 = nn.Linear(dim, dim_feedforward, bias=False)
        self.linear2 = nn.Linear(dim_feedforward, dim, bias=False)
        self.layer_scale_1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.layer_scale_2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()

    def _ff(self, x: Tensor) -> Tensor:
        return x + self.layer_scale_2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x)))
        return self._ff(x)

    def step(self, x: Tensor, offset: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, state = self.self_attn.step(self.norm1(x), offset, state)
        x = x + self.layer_scale_1(y)
        return self._ff(x), state


class StreamingTransformer(nn.Module):
    """Stack of causal layers over a convolutional layout ``[B, C, T]``, with optional bias-free input and
    output projections (when ``input_dim`` / ``output_dim`` differ from ``dim``).

    Streaming protocol: ``num_states = 2 * num_layers + 1`` (keys and values per layer, then the position).

    Args:
        dim: model dimension.
        num_heads: attention heads.
        num_layers: layers.
        dim_feedforward: hidden size of the feed-forward.
        context: attention context in frames.
        max_period: RoPE maximum period.
        layer_scale: initial layer scale, or ``None`` for none.
        input_dim: channels of the input (default ``dim``).
        output_dim: channels of the output (default ``dim``).
    """

    def __init__(self, dim: int, num_heads: int, num_layers: int, dim_feedforward: int, context: int,
                 max_period: float = 10000.0, layer_scale: Optional[float] = None,
                 input_dim: Optional[int] = None, output_dim: Optional[int] = None):
        super().__init__()
        self.layers = nn.ModuleList(
            [TransformerLayer(dim, num_heads, dim_feedforward, context, max_period, layer_scale)
             for _ in range(num_layers)]
        )
        in_dim = int(input_dim or dim)
        out_dim = int(output_dim or dim)
        self.has_input_proj = in_dim != dim
        self.has_output_proj = out_dim != dim
        self.input_proj = nn.Linear(in_dim, dim, bias=False) if self.has_input_proj else nn.Identity()
        self.output_proj = nn.Linear(dim, out_dim, bias=False) if self.has_output_proj else nn.Identity()
        self.dim = int(dim)
        self.num_states = 2 * num_layers + 1
        self.register_buffer("_ref", torch.zeros(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C_in, T] -> [B, C_out, T]`` from position 0."""
        h = self.input_proj(x.transpose(1, 2))
        for layer in self.layers:
            h = layer(h)
        return self.output_proj(h).transpose(1, 2)

    def init_state(self, batch: int) -> List[Tensor]:
        state: List[Tensor] = []
        for layer in self.layers:
            state.extend(layer.self_attn.init_state(batch, self._ref.device, self._ref.dtype))
        state.append(torch.zeros(1, dtype=torch.long, device=self._ref.device))
        return state

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Continue from ``state`` with ``x [B, C_in, t]`` (any ``t >= 0``)."""
        if x.shape[-1] == 0:
            return self.output_proj(self.input_proj(x.transpose(1, 2))).transpose(1, 2), state
        offset = state[-1]
        h = self.input_proj(x.transpose(1, 2))
        new_state: List[Tensor] = []
        i = 0
        for layer in self.layers:
            h, s = layer.step(h, offset, state[i : i + 2])
            new_state.extend(s)
            i += 2
        new_state.append(offset + x.shape[-1])
        return self.output_proj(h).transpose(1, 2), new_state
