"""WavTokenizer-style decoder: ConvNeXt backbone at the token rate, optional causal attention, iSTFT head.

WavTokenizer (Ji et al., 2024) decodes a single 4096-entry codebook at 75 Hz or 40 Hz with a Vocos
backbone that runs at the token rate (no upsampling): ConvNeXt-1D blocks with an attention block, then
an inverse-STFT head whose hop equals the codec hop (320 or 600 samples at 24 kHz) and whose FFT size
is four hops. This module builds that decoder from the team's streaming blocks:

* :class:`~sonotok.modules.convnext.ConvNeXtStack` (causal depthwise convolutions, explicit state);
* :class:`CausalWindowAttention` (below): multi-head self-attention restricted to the last ``context``
  frames, whose streaming state is the last ``context`` normalised inputs plus a validity mask, so the
  streamed output equals the offline output for any chunk size;
* :class:`~sonotok.modules.stft.ISTFTHead` (log-magnitude + phase vector per bin, overlap-add with the
  overlap tail as state; the stream lags the offline output by ``n_fft - hop`` samples).

The original WavTokenizer backbone is non-causal with full attention; this one is causal (so it
streams) and its attention window is finite. Take ``attention_context`` large (e.g. 4 s of frames) for
offline-only use.

References:
    Ji et al., 2024, "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer for Audio Language Modeling".
    Siuzdak, 2023, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders".
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.modules.convnext import ChannelLayerNorm, ConvNeXtStack, Pointwise
from sonotok.modules.stft import ISTFTHead
from sonotok.modules.stft_convnext import StreamingLatentDecoder
from sonotok.modules.streaming import Stateless, StreamingSequential


class CausalWindowAttention(nn.Module):
    """Pre-norm residual self-attention over the last ``context`` frames: ``[B, C, T] -> [B, C, T]``.

    Query ``t`` attends to keys ``t - context + 1 .. t``. Streaming state: the last ``context`` normalised
    input frames ``[B, C, context]`` and their validity ``[B, 1, context]`` (zero before the stream starts).

    Args:
        dim: channels.
        num_heads: attention heads (must divide ``dim``).
        context: number of frames each query sees, itself included.
    """


    def __init__(self, dim: int, num_heads: int = 4, context: int = 64):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.dim // self.num_heads
        self.context = int(context)
        self.num_states = 2
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # starts as the identity (residual), like layer scale
        nn.init.zeros_(self.out.bias)

    def _attend(self, h_ctx: Tensor, n_new: int, valid: Tensor) -> Tensor:
        """``h_ctx [B, L, C]`` (normalised; the last ``n_new`` rows are the queries), ``valid [B, L]``."""
        b, L, c = h_ctx.shape
        q, k, v = self.qkv(h_ctx).chunk(3, dim=-1)
        q = q[:, L - n_new :]
        q = q.reshape(b, n_new, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, L, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, L, self.num_heads, self.head_dim).transpose(1, 2)
        qpos = torch.arange(L - n_new, L, device=h_ctx.device)[:, None]
        kpos = torch.arange(L, device=h_ctx.device)[None, :]
        allowed = (kpos <= qpos) & (kpos > qpos - self.context)  # [n_new, L]
        mask = allowed[None, None] & valid[:, None, None, :]  # [B, 1, n_new, L]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(b, n_new, c)
        return self.out(y)

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 3 and x.shape[1] == self.dim, f"attention expects [B, {self.dim}, T], got {list(x.shape)}"
        h = self.norm(x.transpose(1, 2))
        valid = torch.ones(h.shape[0], h.shape[1], dtype=torch.bool, device=h.device)
        return x + self._attend(h, h.shape[1], valid).transpose(1, 2)

    def init_state(self, batch: int) -> List[Tensor]:
        w = self.qkv.weight
        return [
            torch.zeros(batch, self.dim, self.context, device=w.device, dtype=w.dtype),
            torch.zeros(batch, 1, self.context, device=w.device, dtype=w.dtype),
        ]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream ``x [B, C, t]`` (any ``t``, including 0)."""
        t = x.shape[-1]
        if t == 0:
            return x, state
        h_new = self.norm(x.transpose(1, 2)).transpose(1, 2)  # [B, C, t]
        h_ctx = torch.cat([state[0], h_new], dim=-1)
        ok = torch.cat([state[1], torch.ones_like(state[1][..., :1]).expand(-1, -1, t)], dim=-1)
        y = x + self._attend(h_ctx.transpose(1, 2), t, ok[:, 0] > 0.5).transpose(1, 2)
        return y, [h_ctx[..., -self.context :], ok[..., -self.context :]]


class WavTokenizerDecoder(StreamingLatentDecoder):
    """``latent [B, dimension, F] -> wav [B, 1, F * hop_length]`` (Vocos backbone at the token rate + iSTFT).

    Layout: 1x1 projection, LayerNorm, ``num_blocks`` causal ConvNeXt blocks with a
    :class:`CausalWindowAttention` block inserted after each index in ``attention_at``, LayerNorm,
    :class:`~sonotok.modules.stft.ISTFTHead` with ``hop = hop_length`` and ``n_fft = n_fft_factor * hop``.
    The offline output is aligned with the codec input; the streamed output lags it by
    ``delay = (n_fft_factor - 1) * hop_length`` samples (``Codec.decoder_delay`` is derived from it) and
    ``flush`` returns the last ``delay`` samples.

    Args:
        channels: audio channels (must be 1).
        dimension: latent channels (the quantizer's ``dim``).
        width: backbone channels (WavTokenizer: 768).
        hop_length: samples per token frame (= the encoder's hop; 320 for 75 Hz, 600 for 40 Hz at 24 kHz).
        n_fft_factor: synthesis FFT size in hops (WavTokenizer: 4, i.e. 1280 / 2400).
        num_blocks: ConvNeXt blocks (WavTokenizer: 12).
        mlp_ratio: ConvNeXt MLP expansion (WavTokenizer: 3, 768 -> 2304).
        kernel_size: depthwise kernel.
        attention_at: block indices after which an attention block sits (empty: none). ``-1`` means
            before the first ConvNeXt block (where WavTokenizer puts its attention).
        num_heads: attention heads.
        attention_context: frames each attention query sees.
        window: synthesis window of the head.
    """


    def __init__(
        self,
        channels: int = 1,
        dimension: int = 512,
        width: int = 768,
        hop_length: int = 320,
        n_fft_factor: int = 4,
        num_blocks: int = 12,
        mlp_ratio: float = 3.0,
        kernel_size: int = 7,
        attention_at: Sequence[int] = (-1,),
        num_heads: int = 8,
        attention_context: int = 300,
        window: str = "hann",
    ):
        super().__init__()
        if channels != 1:
            raise ValueError(f"WavTokenizerDecoder is mono: channels must be 1, got {channels}")
        self.dimension = int(dimension)
        self.hop_length = int(hop_length)
        head = ISTFTHead(width, int(n_fft_factor) * self.hop_length, self.hop_length, window)
        self.delay = head.delay
        at = sorted(int(i) for i in attention_at)
        bad = [i for i in at if not -1 <= i < num_blocks]
        if bad:
            raise ValueError(f"attention_at {bad} out of range [-1, {num_blocks - 1}]")
        layers: List[nn.Module] = [Stateless(Pointwise(dimension, width)), Stateless(ChannelLayerNorm(width))]
        ls = 1.0 / max(1, num_blocks)
        start = 0
        for i in at:
            if i + 1 > start:
                layers.append(ConvNeXtStack(width, i + 1 - start, kernel_size, mlp_ratio, layer_scale=ls))
                start = i + 1
            layers.append(CausalWindowAttention(width, num_heads, attention_context))
        if num_blocks > start:
            layers.append(ConvNeXtStack(width, num_blocks - start, kernel_size, mlp_ratio, layer_scale=ls))
        layers += [Stateless(ChannelLayerNorm(width)), head]
        self.model = StreamingSequential(*layers)
        self.num_states = self.model.num_states


def frames_for_seconds(seconds: float, sample_rate: int, hop_length: int) -> int:
    """Number of token frames covering ``seconds`` (helper for choosing ``attention_context``)."""
    return int(math.ceil(seconds * sample_rate / hop_length))
