"""Mimi (Kyutai's 12.5 Hz streaming speech codec) as a sonotok codec, and its checkpoint importer.

Reference: Défossez et al., 2024, "Moshi: a speech-text foundation model for real-time dialogue".

Mimi = a causal SEANet encoder (ELU, identity skips, zero padding, ratios 4-5-6-8, 24 kHz -> 25 Hz), an
8-layer causal transformer (RoPE, layer scale, context 250), a learnt strided convolution to 12.5 Hz, a
split residual VQ (one semantic codebook + up to 31 acoustic ones, 2048 codes each, 256-dim through
1x1 projections, nearest neighbour by ``torch.cdist``), and the mirror image on the way back (depthwise
transposed convolution to 25 Hz, transformer, SEANet decoder). One frame is 1920 samples (80 ms).

:class:`MimiCodec` rebuilds it from sonotok's streaming blocks: every part implements
``init_state`` / ``step`` with explicit, fixed-size state, so it streams from the TorchScript artifact.
Offline codes equal the reference's ``encode``; streamed codes equal offline codes for any chunking
(the attention cache always keeps the full context, also inside multi-frame steps).
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from sonotok.errors import ModelLoadError
from sonotok.models.codec import Codec
from sonotok.models.imported.common import (
    Imported,
    imported,
    load_mapped_state,
    read_safetensors,
    require_keys,
)
from sonotok.modules.resample_conv import GroupedConvTranspose1d, ReplicateStartConv1d
from sonotok.modules.streaming import Conv, ConvTranspose, Stateless, StreamingResidual, StreamingSequential
from sonotok.modules.transformer import StreamingTransformer
from sonotok.quantizers.euclidean import EuclideanRVQ, SplitEuclideanRVQ


def _resblock(dim: int, kernel: int, dilation: int, compress: int) -> StreamingResidual:
    hidden = dim // compress
    return StreamingResidual(StreamingSequential(
        Stateless(nn.ELU(alpha=1.0)),
        Conv(dim, hidden, kernel, dilation=dilation, norm="none"),
        Stateless(nn.ELU(alpha=1.0)),
        Conv(hidden, dim, 1, norm="none"),
    ))


def seanet_encoder(channels: int, dimension: int, n_filters: int, ratios: Sequence[int], kernel_size: int,
                   last_kernel_size: int, residual_kernel_size: int, compress: int) -> StreamingSequential:
    """Mimi's SEANet encoder; layer ``i`` is layer ``i`` of the reference's ``encoder.model``."""
    mult = 1
    layers: List[nn.Module] = [Conv(channels, n_filters, kernel_size, norm="none")]
    for ratio in reversed(list(ratios)):
        layers.append(_resblock(mult * n_filters, residual_kernel_size, 1, compress))
        layers.append(Stateless(nn.ELU(alpha=1.0)))
        layers.append(Conv(mult * n_filters, mult * n_filters * 2, ratio * 2, stride=ratio, norm="none"))
        mult *= 2
    layers.append(Stateless(nn.ELU(alpha=1.0)))
    layers.append(Conv(mult * n_filters, dimension, last_kernel_size, norm="none"))
    return StreamingSequential(*layers)


def seanet_decoder(channels: int, dimension: int, n_filters: int, ratios: Sequence[int], kernel_size: int,
                   last_kernel_size: int, residual_kernel_size: int, compress: int) -> StreamingSequential:
    """Mimi's SEANet decoder; layer ``i`` is layer ``i`` of the reference's ``decoder.model``."""
    mult = 2 ** len(ratios)
    layers: List[nn.Module] = [Conv(dimension, mult * n_filters, kernel_size, norm="none")]
    for ratio in ratios:
        layers.append(Stateless(nn.ELU(alpha=1.0)))
        layers.append(ConvTranspose(mult * n_filters, mult * n_filters // 2, ratio * 2, ratio, norm="none"))
        layers.append(_resblock(mult * n_filters // 2, residual_kernel_size, 1, compress))
        mult //= 2
    layers.append(Stateless(nn.ELU(alpha=1.0)))
    layers.append(Conv(n_filters, channels, last_kernel_size, norm="none"))
    return StreamingSequential(*layers)


class MimiEncoder(nn.Module):
    """``wav [B, 1, T] -> latent [B, dimension, T / 1920]``: SEANet, transformer, strided conv (25 -> 12.5 Hz)."""

    def __init__(self, seanet: nn.Module, transformer: nn.Module, downsample: nn.Module, hop_length: int,
                 dimension: int):
        super().__init__()
        self.seanet = seanet
        self.transformer = transformer
        self.downsample = downsample
        self.hop_length = int(hop_length)
        self.dimension = int(dimension)
        self.n1 = int(seanet.num_states)
        self.n2 = int(transformer.num_states)
        self.num_states = self.n1 + self.n2 + int(downsample.num_states)

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.transformer(self.seanet(x)))

    def init_state(self, batch: int) -> List[Tensor]:
        return self.seanet.init_state(batch) + self.transformer.init_state(batch) + self.downsample.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        a, b = self.n1, self.n1 + self.n2
        h, s1 = self.seanet.step(x, state[:a])
        h, s2 = self.transformer.step(h, state[a:b])
        h, s3 = self.downsample.step(h, state[b:])
        return h, s1 + s2 + s3


class MimiDecoder(nn.Module):
    """``latent [B, dimension, F] -> wav [B, 1, F * 1920]``: depthwise upsampling, transformer, SEANet."""

    def __init__(self, upsample: nn.Module, transformer: nn.Module, seanet: nn.Module):
        super().__init__()
        self.upsample = upsample
        self.transformer = transformer
        self.seanet = seanet
        self.n1 = int(upsample.num_states)
        self.n2 = int(transformer.num_states)
        self.num_states = self.n1 + self.n2 + int(seanet.num_states)

    def forward(self, z: Tensor) -> Tensor:
        return self.seanet(self.transformer(self.upsample(z)))

    def init_state(self, batch: int) -> List[Tensor]:
        return self.upsample.init_state(batch) + self.transformer.init_state(batch) + self.seanet.init_state(batch)

    def step(self, z: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        a, b = self.n1, self.n1 + self.n2
        h, s1 = self.upsample.step(z, state[:a])
        h, s2 = self.transformer.step(h, state[a:b])
        h, s3 = self.seanet.step(h, state[b:])
        return h, s1 + s2 + s3


class MimiCodec(Codec):
    """Mimi as a sonotok :class:`Codec` (causal, streams).

    Args:
        sample_rate: 24000.
        channels: 1.
        dimension: latent / transformer dimension (512).
        n_filters: SEANet base width (64).
        ratios: SEANet ratios in decoder order ([8, 6, 5, 4]).
        kernel_size / last_kernel_size / residual_kernel_size / compress: SEANet shape (7, 3, 3, 2).
        num_heads / num_layers / dim_feedforward / context / max_period / layer_scale: transformer (8, 8, 2048,
            250, 10000, 0.01).
        downsample_stride: encoder frame rate / frame rate (2).
        num_codebooks: codebooks kept (8..32 in the release; the first one is semantic).
        codebook_size: 2048.
        codebook_dim: 256.
        name: model name.
    """

    def __init__(self, sample_rate: int = 24000, channels: int = 1, dimension: int = 512, n_filters: int = 64,
                 ratios: Sequence[int] = (8, 6, 5, 4), kernel_size: int = 7, last_kernel_size: int = 3,
                 residual_kernel_size: int = 3, compress: int = 2, num_heads: int = 8, num_layers: int = 8,
                 dim_feedforward: int = 2048, context: int = 250, max_period: float = 10000.0,
                 layer_scale: float | None = 0.01, downsample_stride: int = 2, num_codebooks: int = 8,
                 codebook_size: int = 2048, codebook_dim: int = 256, name: str = "mimi"):
        if num_codebooks < 2:
            raise ValueError(f"Mimi needs at least 2 codebooks (1 semantic + acoustic), got {num_codebooks}")
        shape = (channels, dimension, n_filters, list(ratios), kernel_size, last_kernel_size, residual_kernel_size,
                 compress)

        def transformer() -> StreamingTransformer:
            return StreamingTransformer(dimension, num_heads, num_layers, dim_feedforward, context, max_period,
                                        layer_scale)

        hop = int(math.prod(ratios)) * int(downsample_stride)
        encoder = MimiEncoder(seanet_encoder(*shape), transformer(),
                              ReplicateStartConv1d(dimension, dimension, 2 * downsample_stride, downsample_stride),
                              hop, dimension)
        decoder = MimiDecoder(GroupedConvTranspose1d(dimension, dimension, 2 * downsample_stride, downsample_stride,
                                                     groups=dimension),
                              transformer(), seanet_decoder(*shape))
        quantizer = SplitEuclideanRVQ(
            EuclideanRVQ(dimension, 1, codebook_size, codebook_dim, distance="cdist"),
            EuclideanRVQ(dimension, num_codebooks - 1, codebook_size, codebook_dim, distance="cdist"),
        )
        super().__init__(encoder=encoder, quantizer=quantizer, decoder=decoder, sample_rate=sample_rate,
                         channels=channels, name=name)


# ------------------------------------------------------------------------------------------ import
_RENAMES = [
    (r"^encoder\.model\.(\d+)\.block\.(\d+)\.conv\.conv\.(weight|bias)$", r"encoder.seanet.layers.\1.block.layers.\2.conv.conv.\3"),
    (r"^encoder\.model\.(\d+)\.conv\.conv\.(weight|bias)$", r"encoder.seanet.layers.\1.conv.conv.\2"),
    (r"^decoder\.model\.(\d+)\.block\.(\d+)\.conv\.conv\.(weight|bias)$", r"decoder.seanet.layers.\1.block.layers.\2.conv.conv.\3"),
    (r"^decoder\.model\.(\d+)\.conv\.conv\.(weight|bias)$", r"decoder.seanet.layers.\1.conv.conv.\2"),
    (r"^decoder\.model\.(\d+)\.convtr\.convtr\.weight$", r"decoder.seanet.layers.\1.convtr.convtr.weight"),
    (r"^decoder\.model\.(\d+)\.convtr\.convtr\.bias$", r"decoder.seanet.layers.\1.convtr.bias"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.self_attn\.(in_projs\.0\.weight|in_proj_weight|in_proj\.weight)$",
     r"\1.transformer.layers.\2.self_attn.in_proj.weight"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.self_attn\.(out_projs\.0\.weight|out_proj\.weight)$",
     r"\1.transformer.layers.\2.self_attn.out_proj.weight"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.(norm1|norm2)\.(weight|bias)$",
     r"\1.transformer.layers.\2.\3.\4"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.(linear1|linear2)\.weight$",
     r"\1.transformer.layers.\2.\3.weight"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.(layer_scale_1|layer_scale_2)\.scale$",
     r"\1.transformer.layers.\2.\3.scale"),
    (r"^downsample\.conv\.conv\.conv\.weight$", r"encoder.downsample.conv.weight"),
    (r"^upsample\.convtr\.convtr\.convtr\.weight$", r"decoder.upsample.convtr.weight"),
    (r"^quantizer\.rvq_first\.input_proj\.weight$", r"quantizer.first.proj_in"),
    (r"^quantizer\.rvq_first\.output_proj\.weight$", r"quantizer.first.proj_out"),
    (r"^quantizer\.rvq_rest\.input_proj\.weight$", r"quantizer.rest.proj_in"),
    (r"^quantizer\.rvq_rest\.output_proj\.weight$", r"quantizer.rest.proj_out"),
]
_RENAMES_C = [(re.compile(a), b) for a, b in _RENAMES]
_CODEBOOK = re.compile(r"^quantizer\.(rvq_first|rvq_rest)\.vq\.layers\.(\d+)\._codebook\."
                       r"(embedding_sum|embed_sum|embed_avg|cluster_usage|cluster_size|_initialized|inited)$")


def rename_key(key: str) -> str | None:
    """Mimi (moshi) key -> sonotok key; ``None`` for the codebook statistics (turned into tables)."""
    for pat, repl in _RENAMES_C:
        if pat.match(key):
            return pat.sub(repl, key)
    return None


def _codebook_table(state: Dict[str, Tensor], part: str, level: int, epsilon: float = 1e-5) -> Tensor:
    prefix = f"quantizer.{part}.vq.layers.{level}._codebook."
    total = next((state[prefix + k] for k in ("embedding_sum", "embed_sum", "embed_avg") if prefix + k in state), None)
    usage = next((state[prefix + k] for k in ("cluster_usage", "cluster_size") if prefix + k in state), None)
    if total is None or usage is None:
        raise ModelLoadError(f"codebook {part}.{level}: missing embedding_sum / cluster_usage")
    return total / usage.clamp(min=epsilon)[:, None]  # the reference's `embedding` property


def read_mimi(path, num_codebooks: int = 8, name: str = "mimi") -> Imported:
    """Read Mimi's ``.safetensors`` into a :class:`MimiCodec` (:class:`Imported`).

    Args:
        path: the checkpoint (e.g. ``tokenizer-e351c8d8-checkpoint125.safetensors``).
        num_codebooks: codebooks to keep (2 .. the checkpoint's, 32 in the release; Moshi uses 8).
        name: model name.
    """
    state = read_safetensors(path)
    require_keys(path, state, ["encoder.model.0.conv.conv.weight", "encoder.model.1.block.1.conv.conv.weight",
                               "quantizer.rvq_first.input_proj.weight", "downsample.conv.conv.conv.weight",
                               "encoder_transformer.transformer.layers.0.linear1.weight"], "Mimi")
    conv_idx = sorted(int(m[1]) for k in state if (m := re.match(r"^encoder\.model\.(\d+)\.conv\.conv\.weight$", k)))
    first = state["encoder.model.0.conv.conv.weight"]
    ratios = [int(state[f"encoder.model.{i}.conv.conv.weight"].shape[-1]) // 2 for i in conv_idx[1:-1]]
    last = state[f"encoder.model.{conv_idx[-1]}.conv.conv.weight"]
    n_layers = len({m[1] for k in state if (m := re.match(r"^encoder_transformer\.transformer\.layers\.(\d+)\.", k))})
    lin1 = state["encoder_transformer.transformer.layers.0.linear1.weight"]
    dim = int(lin1.shape[1])
    has_scale = "encoder_transformer.transformer.layers.0.layer_scale_1.scale" in state
    levels_first = len([k for k in state if re.match(r"^quantizer\.rvq_first\.vq\.layers\.\d+\._codebook\.(embedding_sum|embed_sum|embed_avg)$", k)])
    levels_rest = len([k for k in state if re.match(r"^quantizer\.rvq_rest\.vq\.layers\.\d+\._codebook\.(embedding_sum|embed_sum|embed_avg)$", k)])
    if levels_first != 1:
        raise ModelLoadError(f"{path}: expected 1 semantic codebook (rvq_first), found {levels_first}")
    total = levels_first + levels_rest
    if not 2 <= int(num_codebooks) <= total:
        raise ModelLoadError(f"{path}: num_codebooks must be in [2, {total}], got {num_codebooks}")
    down = state["downsample.conv.conv.conv.weight"]
    cb0 = _codebook_table(state, "rvq_first", 0)
    config = {
        "_target_": f"{MimiCodec.__module__}.MimiCodec",
        "sample_rate": 24000,
        "channels": int(first.shape[1]),
        "dimension": int(last.shape[0]),
        "n_filters": int(first.shape[0]),
        "ratios": list(reversed(ratios)),
        "kernel_size": int(first.shape[-1]),
        "last_kernel_size": int(last.shape[-1]),
        "residual_kernel_size": int(state["encoder.model.1.block.1.conv.conv.weight"].shape[-1]),
        "compress": 2,
        "num_heads": 8,
        "num_layers": n_layers,
        "dim_feedforward": int(lin1.shape[0]),
        "context": 250,
        "max_period": 10000.0,
        "layer_scale": 0.01 if has_scale else None,
        "downsample_stride": int(down.shape[-1]) // 2,
        "num_codebooks": int(num_codebooks),
        "codebook_size": int(cb0.shape[0]),
        "codebook_dim": int(cb0.shape[1]),
        "name": name,
    }
    return _build(path, state, config, levels_rest, dim)


def _build(path, state: Dict[str, Tensor], config: Dict, levels_rest: int, dim: int) -> Imported:
    """Build :class:`MimiCodec` from ``config`` and load the renamed weights and the codebook tables.

    Heads (8) and context (250 frames) are not visible in the weights; they are the release's values.
    """
    if dim % config["num_heads"]:
        raise ModelLoadError(f"{path}: transformer dimension {dim} is not a multiple of {config['num_heads']} heads")
    model = MimiCodec(**{k: v for k, v in config.items() if k != "_target_"})
    k_rest = int(config["num_codebooks"]) - 1
    extra = {
        "quantizer.first.codebooks": _codebook_table(state, "rvq_first", 0)[None].float(),
        "quantizer.rest.codebooks": torch.stack([_codebook_table(state, "rvq_rest", i) for i in range(k_rest)]).float(),
    }

    def ignored(key: str) -> bool:
        return _CODEBOOK.match(key) is not None

    load_mapped_state(path, model, state, rename_key, ignored=ignored, extra_state=extra)
    return imported(model, config, path, "mimi", {"checkpoint_codebooks": 1 + levels_rest})
