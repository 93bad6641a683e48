"""EnCodec (24 kHz, causal) rebuilt from sonotok streaming modules, and its checkpoint importer.

Reference: Défossez, Copet, Synnaeve & Adi, 2022, "High Fidelity Neural Audio Compression" (EnCodec).

The released causal 24 kHz model is a SEANet encoder/decoder (ELU, weight norm, 1x1-conv skips, a
two-layer LSTM with a skip in the bottleneck, reflect padding) and a 32-level residual VQ of 1024
codes (75 Hz, 1.5 kbps per level pair: 1.5 / 3 / 6 / 12 / 24 kbps keep 2 / 4 / 8 / 16 / 32 levels).
:class:`EncodecCodec` builds the same network from :class:`~sonotok.modules.reflect_conv.ReflectPadConv1d`,
:class:`~sonotok.modules.lstm.StreamingLSTM` and the causal transposed convolution, so it has the same
parameters (renamed), the same arithmetic offline, and the streaming protocol of every sonotok codec.

Codes equal the reference's for any input length: the layers pad by reflection exactly as EnCodec does
(also at the end of a partial last frame), so :meth:`EncodecCodec.pad_to_frames` adds nothing. Streaming
and sonotok's batch helpers zero-pad a partial last frame to a whole hop; for whole frames every path
gives the reference's codes. The reflected start makes the first few code frames of a stream come out
a few frames late (then the stream catches up); streamed codes equal offline codes.

The 48 kHz stereo model is not supported (:func:`refuse_encodec_48khz`, docs/imports.md): its codes are
per-segment blocks of overlapping 1 s segments, each with a float gain the decoder needs, which sonotok's
codes (one ``[K, ceil(T / hop)]`` grid of integers per file) cannot carry.
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
    as_state_dict,
    imported,
    load_mapped_state,
    read_torch_checkpoint,
    require_keys,
)
from sonotok.modules.lstm import StreamingLSTM
from sonotok.modules.reflect_conv import AlignedResidual, ReflectPadConv1d
from sonotok.modules.streaming import ConvTranspose, Stateless, StreamingSequential
from sonotok.quantizers.euclidean import EuclideanRVQ, stack_codebooks

#: bandwidths (kbps) of the released 24 kHz model
BANDWIDTHS_24K = (1.5, 3.0, 6.0, 12.0, 24.0)


def _resnet_block(dim: int, kernel: int, dilation: int, compress: int, norm: str) -> AlignedResidual:
    hidden = dim // compress
    block = StreamingSequential(
        Stateless(nn.ELU(alpha=1.0)),
        ReflectPadConv1d(dim, hidden, kernel, dilation=dilation, norm=norm),
        Stateless(nn.ELU(alpha=1.0)),
        ReflectPadConv1d(hidden, dim, 1, norm=norm),
    )
    return AlignedResidual(block, ReflectPadConv1d(dim, dim, 1, norm=norm), dim)


class _LayerStack(nn.Module):
    """A streaming stack of layers numbered as the reference's ``model`` (offline forward, init_state, step)."""

    def _set_layers(self, layers: List[nn.Module]) -> None:
        self.model = StreamingSequential(*layers)
        self.num_states = int(self.model.num_states)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]):
        return self.model.step(x, state)


class EncodecEncoder(_LayerStack):
    """EnCodec's causal SEANet encoder: ``wav [B, C, T] -> latent [B, dimension, ceil(T / hop)]``.

    Layer ``i`` of ``self.model`` is layer ``i`` of EnCodec's ``encoder.model`` (same order).

    Args:
        channels: audio channels.
        dimension: latent dimension.
        n_filters: width of the first convolution (doubled at each downsampling).
        ratios: upsampling ratios as EnCodec lists them (the encoder applies them reversed).
        n_residual_layers: residual blocks per stage.
        kernel_size / last_kernel_size / residual_kernel_size: kernels.
        dilation_base: dilation growth inside a stage.
        compress: channel reduction inside residual blocks.
        lstm: LSTM layers in the bottleneck (0: none).
        norm: ``weight_norm`` or ``none``.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), n_residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 compress: int = 2, lstm: int = 2, norm: str = "weight_norm"):
        super().__init__()
        self.channels = int(channels)
        self.dimension = int(dimension)
        self.hop_length = int(math.prod(ratios))
        mult = 1
        layers: List[nn.Module] = [ReflectPadConv1d(channels, n_filters, kernel_size, norm=norm)]
        for ratio in reversed(list(ratios)):
            for j in range(n_residual_layers):
                layers.append(_resnet_block(mult * n_filters, residual_kernel_size, dilation_base**j, compress, norm))
            layers.append(Stateless(nn.ELU(alpha=1.0)))
            layers.append(ReflectPadConv1d(mult * n_filters, mult * n_filters * 2, ratio * 2, stride=ratio, norm=norm))
            mult *= 2
        if lstm:
            layers.append(StreamingLSTM(mult * n_filters, lstm))
        layers.append(Stateless(nn.ELU(alpha=1.0)))
        layers.append(ReflectPadConv1d(mult * n_filters, dimension, last_kernel_size, norm=norm))
        self._set_layers(layers)


class EncodecDecoder(_LayerStack):
    """EnCodec's causal SEANet decoder: ``latent [B, dimension, F] -> wav [B, C, F * hop]``.

    Layer ``i`` of ``self.model`` is layer ``i`` of EnCodec's ``decoder.model``. Arguments as
    :class:`EncodecEncoder` (``ratios`` in the order the decoder applies them).
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), n_residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 compress: int = 2, lstm: int = 2, norm: str = "weight_norm"):
        super().__init__()
        self.channels = int(channels)
        self.dimension = int(dimension)
        self.hop_length = int(math.prod(ratios))
        mult = 2 ** len(ratios)
        layers: List[nn.Module] = [ReflectPadConv1d(dimension, mult * n_filters, kernel_size, norm=norm)]
        if lstm:
            layers.append(StreamingLSTM(mult * n_filters, lstm))
        for ratio in ratios:
            layers.append(Stateless(nn.ELU(alpha=1.0)))
            layers.append(ConvTranspose(mult * n_filters, mult * n_filters // 2, ratio * 2, ratio, norm=norm))
            for j in range(n_residual_layers):
                layers.append(
                    _resnet_block(mult * n_filters // 2, residual_kernel_size, dilation_base**j, compress, norm)
                )
            mult //= 2
        layers.append(Stateless(nn.ELU(alpha=1.0)))
        layers.append(ReflectPadConv1d(n_filters, channels, last_kernel_size, norm=norm))
        self._set_layers(layers)


class EncodecCodec(Codec):
    """EnCodec's causal codec (encoder, residual VQ, decoder) as a sonotok :class:`Codec`.

    Args:
        sample_rate: 24000 for the released model.
        channels: audio channels.
        dimension: latent dimension.
        n_filters: base width.
        ratios: EnCodec's ratios (decoder order).
        lstm: bottleneck LSTM layers.
        num_codebooks: residual levels kept (bandwidth = levels * frame rate * 10 bits).
        codebook_size: codes per level.
        n_residual_layers / residual_kernel_size / dilation_base / compress: SEANet shape.
        name: model name for code files.
    """

    def __init__(self, sample_rate: int = 24000, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), lstm: int = 2, num_codebooks: int = 8,
                 codebook_size: int = 1024, n_residual_layers: int = 1, residual_kernel_size: int = 3,
                 dilation_base: int = 2, compress: int = 2, name: str = "encodec_24khz"):
        shape = dict(channels=channels, dimension=dimension, n_filters=n_filters, ratios=list(ratios),
                     n_residual_layers=n_residual_layers, residual_kernel_size=residual_kernel_size,
                     dilation_base=dilation_base, compress=compress, lstm=lstm)
        super().__init__(
            encoder=EncodecEncoder(**shape),
            quantizer=EuclideanRVQ(dimension, num_codebooks, codebook_size, distance="dot"),
            decoder=EncodecDecoder(**shape),
            sample_rate=sample_rate,
            channels=channels,
            name=name,
        )

    #: the end of a partial last frame is reflected, not zero-padded (sonotok.tokenizer encodes such a model's
    #: files one at a time, unpadded, so their codes are the reference's)
    reflects_end = True

    #: no torch.export streaming programs: the reflected start makes the first outputs of a stream depend on
    #: how much audio has arrived (data-dependent shapes); the TorchScript artifact streams it
    torch_export = False

    def pad_to_frames(self, wav: Tensor) -> Tensor:
        """No zero padding: the layers reflect the end as EnCodec does (codes equal the reference's)."""
        return wav


# ------------------------------------------------------------------------------------------ import
_CONV = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.conv\.conv\.(weight_g|weight_v|bias)$")
_CONVTR = re.compile(r"^decoder\.model\.(\d+)\.convtr\.convtr\.(weight_g|weight_v|bias)$")
_BLOCK = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.(block\.(\d+)|shortcut)\.conv\.conv\.(weight_g|weight_v|bias)$")
_LSTM = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.lstm\.(\w+)$")
_CODEBOOK = re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(embed|inited|cluster_size|embed_avg)$")
_WN = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1",
       "bias": "bias"}


def rename_key(key: str) -> str | None:
    """EnCodec state-dict key -> sonotok key (``None`` for keys with no counterpart or codebooks)."""
    if m := _CONV.match(key):
        return f"{m[1]}.model.layers.{m[2]}.conv.{_WN[m[3]]}"
    if m := _CONVTR.match(key):
        suffix = "bias" if m[2] == "bias" else f"convtr.{_WN[m[2]]}"
        return f"decoder.model.layers.{m[1]}.convtr.{suffix}"
    if m := _BLOCK.match(key):
        inner = f"block.layers.{m[4]}" if m[4] is not None else "shortcut"
        return f"{m[1]}.model.layers.{m[2]}.{inner}.conv.{_WN[m[5]]}"
    return None  # LSTM weights are stacked per layer kind (lstm_tables), codebooks are stacked too


def lstm_tables(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """EnCodec's ``nn.LSTM`` tensors (``weight_ih_l0`` ...) stacked into :class:`StreamingLSTM`'s parameters."""
    out: Dict[str, Tensor] = {}
    found: Dict[Tuple[str, str], Dict[str, Dict[int, Tensor]]] = {}
    for key, value in state.items():
        if m := _LSTM.match(key):
            if k := re.match(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$", m[3]):
                found.setdefault((m[1], m[2]), {}).setdefault(k[1], {})[int(k[2])] = value
    for (part, idx), kinds in found.items():
        for kind, layers in kinds.items():
            out[f"{part}.model.layers.{idx}.{kind}"] = torch.stack([layers[i] for i in sorted(layers)])
    return out


ENCODEC_48KHZ_REASON = (
    "EnCodec 48 kHz cannot be imported: its codes do not fit sonotok's code format. The reference encodes "
    "overlapping 1 s segments (48000 samples = 150 frames, one every 47520 samples = 148.5 frames), so a "
    "file's codes are a list of per-segment [K, 150] blocks, not one [K, ceil(T / 320)] frame grid; each "
    "segment is divided by its RMS before encoding and that float gain is part of the encoding (the decoder "
    "multiplies it back before a triangular overlap-add), and sonotok code files hold integer codes only. "
    "The network is also non-causal (symmetric padding, GroupNorm over each whole segment after every "
    "convolution), so it could not stream either. See docs/imports.md; the 24 kHz model imports as "
    "encodec_24khz")


def refuse_encodec_48khz(path) -> None:
    """``sonotok import encodec_48khz``: always a :class:`ModelLoadError` giving the reason (nothing is read)."""
    raise ModelLoadError(f"{path}: {ENCODEC_48KHZ_REASON}")


def _is_encodec_48khz(state: Dict[str, Tensor]) -> bool:
    """EnCodec 48 kHz's layout: plain conv weights with a GroupNorm after each (``time_group_norm``)."""
    return "encoder.model.0.conv.conv.weight" in state and "encoder.model.0.conv.norm.weight" in state


def infer_config(path, state: Dict[str, Tensor]) -> Dict[str, object]:
    """The :class:`EncodecCodec` shape stored in an EnCodec state dict (widths, ratios, LSTM, levels).

    The downsampling convolutions are the encoder convolutions between the first and the last one
    (kernel ``2 * ratio``); everything else the importer checks by loading the weights into the model
    built from these values (a mismatch is a :class:`ModelLoadError` listing the keys).
    """
    if _is_encodec_48khz(state):
        raise ModelLoadError(f"{path}: this is an EnCodec 48 kHz checkpoint (time_group_norm layers), not the "
                             f"causal 24 kHz model. {ENCODEC_48KHZ_REASON}")
    require_keys(path, state, ["encoder.model.0.conv.conv.weight_v", "quantizer.vq.layers.0._codebook.embed"],
                 "EnCodec")
    convs = sorted(int(m[1]) for k in state if (m := re.match(r"^encoder\.model\.(\d+)\.conv\.conv\.weight_v$", k)))
    first = state["encoder.model.0.conv.conv.weight_v"]
    ratios = [int(state[f"encoder.model.{i}.conv.conv.weight_v"].shape[-1]) // 2 for i in convs[1:-1]]
    lstm_layers = len([k for k in state if re.match(r"^encoder\.model\.\d+\.lstm\.weight_ih_l\d+$", k)])
    levels = len([k for k in state if re.match(r"^quantizer\.vq\.layers\.\d+\._codebook\.embed$", k)])
    embed = state["quantizer.vq.layers.0._codebook.embed"]
    return {
        "channels": int(first.shape[1]),
        "n_filters": int(first.shape[0]),
        "ratios": list(reversed(ratios)),
        "lstm": lstm_layers,
        "dimension": int(embed.shape[1]),
        "codebook_size": int(embed.shape[0]),
        "levels": levels,
    }


def num_codebooks_for_bandwidth(bandwidth: float, sample_rate: int, hop_length: int, codebook_size: int) -> int:
    """EnCodec's rule: ``floor(bandwidth / (log2(bins) * frame_rate / 1000))`` levels, at least 1."""
    frame_rate = math.ceil(sample_rate / hop_length)
    per_level = math.log2(codebook_size) * frame_rate / 1000
    return int(max(1, math.floor(bandwidth / per_level)))


def read_encodec(path, bandwidth: float = 6.0, sample_rate: int = 24000, name: str = "encodec_24khz"):
    """Read EnCodec's ``.th`` state dict into an :class:`EncodecCodec` (:class:`Imported`).

    Args:
        path: the checkpoint (e.g. ``encodec_24khz-d7cc33bc.th``).
        bandwidth: kbps; keeps ``num_codebooks_for_bandwidth`` levels (24 kHz: 1.5, 3, 6, 12 or 24).
        sample_rate: the model's rate.
        name: model name recorded in code files.

    Returns:
        the model, its config and meta fields (:class:`Imported`).
    """
    state = as_state_dict(path, read_torch_checkpoint(path), "an EnCodec state dict")
    shape = infer_config(path, state)
    if shape["channels"] != 1 or shape["lstm"] == 0:
        raise ModelLoadError(f"{path}: only the causal mono EnCodec (24 kHz) is supported "
                             f"(found {shape['channels']} channels, {shape['lstm']} LSTM layers)")
    hop = int(math.prod(shape["ratios"]))
    k = num_codebooks_for_bandwidth(bandwidth, sample_rate, hop, int(shape["codebook_size"]))
    if k > shape["levels"]:
        raise ModelLoadError(f"{path}: bandwidth {bandwidth} kbps needs {k} codebooks, the checkpoint has "
                             f"{shape['levels']}")
    config = {
        "_target_": f"{EncodecCodec.__module__}.EncodecCodec",
        "sample_rate": sample_rate,
        "channels": shape["channels"],
        "dimension": shape["dimension"],
        "n_filters": shape["n_filters"],
        "ratios": shape["ratios"],
        "lstm": shape["lstm"],
        "num_codebooks": k,
        "codebook_size": shape["codebook_size"],
        "name": name,
    }
    model = EncodecCodec(**{key: v for key, v in config.items() if key != "_target_"})
    tables = []
    for level in range(k):
        tables.append(state[f"quantizer.vq.layers.{level}._codebook.embed"])
    lstm = lstm_tables(state)
    load_mapped_state(
        path, model, state, rename_key,
        ignored=lambda key: _CODEBOOK.match(key) is not None or (
            _LSTM.match(key) is not None and re.search(r"\.(weight|bias)_(ih|hh)_l\d+$", key) is not None),
        extra_state={"quantizer.codebooks": stack_codebooks(tables), **lstm},
    )
    return imported(model, config, path, "encodec",
                           {"bandwidth_kbps": float(bandwidth), "checkpoint_levels": int(shape["levels"])})
