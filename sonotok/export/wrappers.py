"""Scriptable inference wrappers around a :class:`~sonotok.models.Codec` for export.

The wrappers hold only what inference needs, as plain modules that TorchScript and ``torch.export``
can follow: the streaming encoder/decoder with weight norm folded away, and the quantizer replaced by
its frozen twin (``Quantizer.to_frozen()``: plain codebook tables, identical codes).

* :class:`StreamingEncoder`: ``forward(wav [B, C, t], state) -> (codes [B, K, f], state)``; any ``t``,
  ``f`` is the number of code frames completed by this chunk (0 while a frame is still filling).
* :class:`StreamingDecoder`: ``forward(codes [B, K, f], state) -> (wav [B, C, f * hop], state)``, the raw
  decoder stream, which lags the decoded signal (``Codec.decode``) by ``delay`` samples (its first ``delay``
  samples are pre-roll, before time zero); ``flush(state) -> wav [B, C, delay]`` gives its last ``delay``
  samples at the end of a stream. Drop the pre-roll and append the flush, and the stream is the decoded
  signal sample for sample (what :class:`sonotok.models.codec.StreamingSession` does).
* :class:`OfflineCodec`: ``encode(wav [B, C, T]) -> codes [B, K, ceil(T / hop)]`` and
  ``decode(codes) -> wav [B, C, F * hop]``.

States are flat ``List[Tensor]`` created by ``init_state(batch)`` (exported as a method), so a caller
needs nothing but ``torch`` to stream.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.errors import SonotokError
from sonotok.modules.conv import fold_weight_norm
from sonotok.modules.convnext import fold_layer_scale


def check_exportable(codec: nn.Module) -> None:
    """Refuse a model whose inference is not the plain causal ``encoder -> quantizer -> decoder`` chain.

    Raises:
        SonotokError: the model is not causal (X-Codec: its encoder needs the semantic teacher, which sees
            the whole input and is not part of the exported modules).
    """
    if not getattr(codec, "causal", True):
        raise SonotokError(
            f"{getattr(codec, 'name', type(codec).__name__)} ({type(codec).__name__}) cannot be exported: it is "
            "not causal (its encoder runs a semantic teacher over the whole input), so no streaming encoder "
            "exists and the exported modules would leave the teacher out. Use it from Python (sonotok.load), "
            "or train a streaming semantic codec (experiment=split_rvq_16k) to export"
        )


def prepare_for_export(codec: nn.Module) -> nn.Module:
    """A deep copy of ``codec`` in eval mode, weight norm and ConvNeXt layer scales folded, quantizer frozen.

    The copy's ``quantizer`` is the frozen module (``encode``/``decode`` only); the original codec is
    left untouched.

    Raises:
        SonotokError: the codec cannot be exported (:func:`check_exportable`).
    """
    check_exportable(codec)
    frozen_q = codec.quantizer.to_frozen()
    c = copy.deepcopy(codec)
    c.quantizer = frozen_q
    fold_weight_norm(c)
    fold_layer_scale(c)
    c.eval()
    for p in c.parameters():
        p.requires_grad_(False)
    return c


class StreamingEncoder(nn.Module):
    """Streaming encode: audio chunks in, complete code frames out (state in, state out).

    Args:
        encoder: a streaming encoder (``step`` / ``init_state``), weight norm folded.
        quantizer: a frozen quantizer (``encode``).
        hop_length: samples per code frame.
        channels: audio channels.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, hop_length: int, channels: int):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.hop_length = int(hop_length)
        self.channels = int(channels)
        self.num_states = int(encoder.num_states)

    @classmethod
    def from_codec(cls, codec: nn.Module, prepared: bool = False) -> "StreamingEncoder":
        c = codec if prepared else prepare_for_export(codec)
        return cls(c.encoder, c.quantizer, c.hop_length, c.channels)

    def forward(self, wav: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """``wav [B, C, t]`` (any ``t >= 0``) -> ``codes [B, K, f]`` int64 and the new state."""
        z, new_state = self.encoder.step(wav, state)
        return self.quantizer.encode(z), new_state

    @torch.jit.export
    def init_state(self, batch: int) -> List[Tensor]:
        """Fresh state for ``batch`` streams (zeros: the stream starts from silence)."""
        return self.encoder.init_state(batch)


class StreamingDecoder(nn.Module):
    """Streaming decode: code frames in, ``hop_length`` samples per frame out (state in, state out).

    The output lags the decoded signal by ``delay`` samples (``Codec.decoder_delay``; 0 for causal conv
    decoders): drop the first ``delay`` samples of a stream and append ``flush(state)`` at its end.

    Args:
        decoder: a streaming decoder (``step`` / ``init_state``, and ``flush`` when it has a delay), weight
            norm folded.
        quantizer: a frozen quantizer (``decode``).
        hop_length: samples per code frame.
        channels: audio channels.
        delay: the decoder's delay in samples.
    """

    def __init__(self, decoder: nn.Module, quantizer: nn.Module, hop_length: int, channels: int, delay: int = 0):
        super().__init__()
        self.decoder = decoder
        self.quantizer = quantizer
        self.hop_length = int(hop_length)
        self.channels = int(channels)
        self.delay = int(delay)
        self.num_states = int(decoder.num_states)
        if self.delay and not hasattr(decoder, "flush"):
            raise TypeError(f"{type(decoder).__name__} has a delay of {self.delay} samples but no flush(state)")

    @classmethod
    def from_codec(cls, codec: nn.Module, prepared: bool = False) -> "StreamingDecoder":
        c = codec if prepared else prepare_for_export(codec)
        return cls(c.decoder, c.quantizer, c.hop_length, c.channels, int(getattr(c, "decoder_delay", 0)))

    def forward(self, codes: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """``codes [B, K, f]`` -> ``wav [B, C, f * hop_length]`` (lagging by ``delay``) and the new state."""
        z_q = self.quantizer.decode(codes)
        return self.decoder.step(z_q, state)

    @torch.jit.export
    def flush(self, state: List[Tensor]) -> Tensor:
        """The last ``delay`` samples of a stream, ``[B, C, delay]`` (``state`` is not changed)."""
        if hasattr(self.decoder, "flush"):
            return self.decoder.flush(state)
        if len(state) > 0:
            return torch.zeros(state[0].shape[0], self.channels, 0, device=state[0].device)
        return torch.zeros(1, self.channels, 0)

    @torch.jit.export
    def init_state(self, batch: int) -> List[Tensor]:
        """Fresh state for ``batch`` streams."""
        return self.decoder.init_state(batch)


class OfflineCodec(nn.Module):
    """Whole-signal encode/decode of the causal codec (same results as ``Codec.encode/decode``).

    ``forward(wav)`` returns the reconstruction cropped to the input length.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, hop_length: int, channels: int):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.hop_length = int(hop_length)
        self.channels = int(channels)

    @classmethod
    def from_codec(cls, codec: nn.Module, prepared: bool = False) -> "OfflineCodec":
        c = codec if prepared else prepare_for_export(codec)
        return cls(c.encoder, c.quantizer, c.decoder, c.hop_length, c.channels)

    @torch.jit.export
    def encode(self, wav: Tensor) -> Tensor:
        """``wav [B, C, T] -> codes [B, K, ceil(T / hop_length)]`` int64 (end zero-padded to whole frames)."""
        extra = (-wav.shape[-1]) % self.hop_length
        wav = F.pad(wav, [0, extra])
        return self.quantizer.encode(self.encoder(wav))

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K, F] -> wav [B, C, F * hop_length]``."""
        return self.decoder(self.quantizer.decode(codes))

    def forward(self, wav: Tensor) -> Tensor:
        return self.decode(self.encode(wav))[..., : wav.shape[-1]]


def build_export_modules(codec: nn.Module) -> Tuple[StreamingEncoder, StreamingDecoder, OfflineCodec]:
    """The three inference modules, sharing one prepared (folded, frozen) copy of ``codec``."""
    c = prepare_for_export(codec)
    return (
        StreamingEncoder.from_codec(c, prepared=True),
        StreamingDecoder.from_codec(c, prepared=True),
        OfflineCodec.from_codec(c, prepared=True),
    )


def state_shapes(state: List[Tensor]) -> List[List[int]]:
    """Shapes of a state list (for ``export.json``)."""
    return [list(s.shape) for s in state]


def prepare_export(codec: nn.Module, out_dir) -> Tuple[Path, bool, StreamingEncoder, StreamingDecoder, OfflineCodec]:
    """The shared start of every exporter: refuse what cannot be exported (nothing written), create
    ``out_dir``, put ``codec`` in eval mode and build its export modules.

    Returns:
        ``(out_dir, codec.training before the call, encoder, decoder, offline codec)``.
    """
    check_exportable(codec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    was_training = codec.training
    codec.eval()
    return (out, was_training, *build_export_modules(codec))
