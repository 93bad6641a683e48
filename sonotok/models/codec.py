"""The neural audio codec: encoder -> quantizer -> decoder.

References:
    Zeghidour et al., 2021, "SoundStream: An End-to-End Neural Audio Codec".
    Défossez et al., 2022, "High Fidelity Neural Audio Compression" (EnCodec).
    Kumar et al., 2023, "High-Fidelity Audio Compression with Improved RVQGAN" (DAC).
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer


def derive_decoder_delay(decoder: nn.Module, declared: Optional[int] = None) -> int:
    """The decoder's algorithmic delay in samples: ``decoder.delay`` (0 when it has none).

    Raises:
        ValueError: ``declared`` (a config's ``decoder_delay``) is given and disagrees with the decoder.
    """
    delay = int(getattr(decoder, "delay", 0))
    if delay < 0:
        raise ValueError(f"{type(decoder).__name__}.delay must be >= 0, got {delay}")
    if declared is not None and int(declared) != delay:
        raise ValueError(
            f"decoder_delay={int(declared)} disagrees with the decoder: {type(decoder).__name__} delays its "
            f"stream by {delay} samples (e.g. n_fft - hop of an inverse-STFT head). The delay is derived from "
            f"the decoder: remove decoder_delay from the config (or set it to {delay})"
        )
    return delay


class Codec(nn.Module):
    """A codec made of separate modules composed by Hydra.

    The encoder maps ``wav [B, C, T]`` to a latent ``[B, D, T / hop_length]``, the quantizer turns it
    into codes ``[B, K, F]`` and back, the decoder maps the latent back to ``[B, C, F * hop_length]``.
    Encoder and decoder implement the streaming protocol (``init_state`` / ``step``), see
    :mod:`sonotok.modules.streaming`.

    **The decoded signal** of codes ``[B, K, F]`` is :meth:`decode`: ``F * hop_length`` samples aligned with
    the encoder's input, made from those ``F`` frames only (an inverse-STFT decoder overlap-adds exactly
    the frames that exist, as if the stream were followed by frames of zero spectrum). Every other path
    gives the same samples at the same positions: a :meth:`streaming` session (decode + ``flush()``),
    chunked decoding of long code files, the exported streaming artifact and ``sonotok stream``.
    The functional core :meth:`decode_step` lags that signal by ``decoder_delay`` samples (its first
    ``decoder_delay`` samples are the pre-roll, before time zero) and :meth:`decode_flush` returns its
    last ``decoder_delay`` samples; :class:`StreamingSession` is the one place that aligns the two.

    Args:
        encoder: module with attributes ``hop_length`` and ``dimension``.
        quantizer: a :class:`~sonotok.quantizers.base.Quantizer` over ``dimension`` channels.
        decoder: module mapping the latent back to audio.
        sample_rate: audio sample rate in Hz.
        channels: audio channels.
        decoder_delay: the decoder's algorithmic delay in samples. Derived from the decoder (its ``delay``
            attribute, 0 for causal conv decoders) when ``None``; an explicit value must agree with it
            (old model directories carry one).
        quantizer_bypass_prob: probability of skipping quantization per training step (warm-up aid).
        name: a short model name recorded in code files.
    """

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: Quantizer,
        decoder: nn.Module,
        sample_rate: int = 16000,
        channels: int = 1,
        decoder_delay: Optional[int] = None,
        quantizer_bypass_prob: float = 0.0,
        name: str = "codec",
    ):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.hop_length = int(encoder.hop_length)
        self.decoder_delay = derive_decoder_delay(decoder, decoder_delay)
        self.quantizer_bypass_prob = float(quantizer_bypass_prob)
        self.name = name
        if getattr(quantizer, "dim", None) != getattr(encoder, "dimension", quantizer.dim):
            raise ValueError(
                f"encoder dimension {encoder.dimension} does not match quantizer dim {quantizer.dim}"
            )

    # ----------------------------------------------------------------- properties
    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def num_codebooks(self) -> int:
        return int(self.quantizer.num_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.quantizer.codebook_size)

    #: the encoder streams (zero look-ahead): a frame's code depends only on the audio up to its end, so
    #: streamed and zero-padded batched codes equal the codes of one file alone. Non-causal models
    #: (X-Codec: its teacher sees the whole input) set it False; they neither stream their encoder nor export.
    causal: bool = True

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: one frame (the encoder waits for a whole hop) plus the decoder delay."""
        return self.hop_length + self.decoder_delay

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def bitrate(self, num_codebooks: Optional[int] = None) -> float:
        """Bits per second at ``num_codebooks`` (default all; checked by the quantizer, e.g. FSQ takes 1..K)."""
        k = self.num_codebooks if num_codebooks is None else self.quantizer.check_num_codebooks(int(num_codebooks))
        return self.frame_rate * k * math.log2(self.codebook_size)

    # ----------------------------------------------------------------- helpers
    def _check_wav(self, wav: Tensor) -> Tensor:
        if wav.dim() == 1:
            wav = wav[None, None]
        elif wav.dim() == 2:
            wav = wav[:, None] if self.channels == 1 and wav.shape[0] != 1 else wav[None]
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"expected audio [B, {self.channels}, T], got {list(wav.shape)}")
        return wav

    def prepare(self, wav: Tensor, sample_rate: Optional[int] = None) -> Tensor:
        """Shape ``wav`` to ``[B, C, T]`` and resample from ``sample_rate`` to the model's rate."""
        wav = self._check_wav(wav)
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(sample_rate), self.sample_rate)
        return wav

    def pad_to_frames(self, wav: Tensor) -> Tensor:
        """Zero-pad the end of ``wav`` to a whole number of frames.

        Every strided layer then sees a whole number of strides, so the last frame's code is the same
        whether the file is encoded alone, in a padded batch or streamed (the causal model never looks
        past the end of a frame).
        """
        extra = (-wav.shape[-1]) % self.hop_length
        return F.pad(wav, (0, extra)) if extra else wav

    def num_frames(self, num_samples: int) -> int:
        """Code frames produced for ``num_samples`` input samples."""
        return -(-num_samples // self.hop_length)

    # ----------------------------------------------------------------- training
    def forward(self, wav: Tensor) -> Dict[str, object]:
        """Training/validation pass.

        Args:
            wav: ``[B, C, T]``.

        Returns:
            dict with ``recon [B, C, T]`` (cropped to the input length), ``z``, ``z_q``,
            ``codes [B, K, F]``, ``losses`` and ``metrics`` (from the quantizer).
        """
        wav = self._check_wav(wav)
        if self.training:  # the quantizer may change (EMA, k-means, optimizer): streams rebuild their copy
            self._drop_stream_quantizer()
        z = self.encoder(wav)
        q = self.quantizer(z)
        z_q = q.z_q
        if self.training and self.quantizer_bypass_prob > 0 and torch.rand(()) < self.quantizer_bypass_prob:
            z_q = z
        recon = self.decoder(z_q)[..., : wav.shape[-1]]
        if recon.shape[-1] < wav.shape[-1]:
            recon = F.pad(recon, (0, wav.shape[-1] - recon.shape[-1]))
        return {"recon": recon, "z": z, "z_q": z_q, "codes": q.codes, "losses": q.losses, "metrics": q.metrics}

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def encode(
        self, wav: Tensor, sample_rate: Optional[int] = None, num_codebooks: Optional[int] = None
    ) -> Tensor:
        """``wav [B, C, T] -> codes [B, K, ceil(T / hop_length)]`` (int64).

        Args:
            wav: audio; ``[T]`` and ``[C, T]`` are accepted for a single item.
            sample_rate: the rate of ``wav`` if it differs from the model's (resampled with torchaudio).
            num_codebooks: keep the first ``K`` codebooks (lower bitrate).
        """
        wav = self.prepare(wav, sample_rate)
        wav = self.pad_to_frames(wav)
        z = self.encoder(wav)
        return self.quantizer.encode(z, num_codebooks)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: Optional[int] = None) -> Tensor:
        """``codes [B, K, F] -> wav [B, C, F * hop_length]`` (cropped to ``length`` when given).

        This is the decoded signal (see the class docstring): streaming, chunked decoding and the
        exported artifact reproduce it sample for sample, including its last ``decoder_delay`` samples.
        """
        if codes.dim() == 2:
            codes = codes[None]
        z_q = self.quantizer.decode(codes)
        wav = self.decoder(z_q)
        if length is not None:
            wav = wav[..., :length]
        return wav

    # file-level helpers (thin wrappers over sonotok.tokenizer.ops)
    def encode_file(self, path, num_codebooks: Optional[int] = None, channels: str = "downmix") -> Tensor:
        """Encode an audio file -> ``codes [K, F]``; long files stream in bounded memory (sonotok.tokenizer)."""
        from sonotok.tokenizer.ops import encode_file

        return encode_file(self, path, num_codebooks=num_codebooks, channels=channels)

    def encode_batch(self, wavs: List[Tensor], sample_rate: Optional[int] = None,
                     num_codebooks: Optional[int] = None) -> List[Tensor]:
        """Items ``[T_i]``/``[C, T_i]`` of different lengths -> one ``codes [K, ceil(T_i / hop)]`` each."""
        from sonotok.tokenizer.ops import encode_batch

        return encode_batch(self, wavs, sample_rate=sample_rate, num_codebooks=num_codebooks)

    def decode_batch(self, codes: List[Tensor], lengths: Optional[List[int]] = None) -> List[Tensor]:
        """Items ``codes [K, F_i]`` -> one ``wav [C, T_i]`` each (``lengths`` crops)."""
        from sonotok.tokenizer.ops import decode_batch

        return decode_batch(self, codes, lengths)

    # ----------------------------------------------------------------- streaming
    def _drop_stream_quantizer(self) -> None:
        self.__dict__.pop("_stream_q", None)

    def _stream_quantizer(self) -> nn.Module:
        """The frozen quantizer used while streaming (``Quantizer.encode`` rebuilds its frozen twin on every
        call: cheap offline, too slow per 20 ms frame).

        Kept outside the module tree so it never enters ``state_dict``. It is rebuilt when it could be stale:
        after :meth:`init_state`, a training forward pass, ``train()`` / ``eval()``, ``load_state_dict`` and
        any ``.to()`` / ``.cuda()`` / ``.double()`` of the codec, and when the quantizer's tensors moved
        (``codec.quantizer.to(...)`` alone). It lives on the device of the quantizer's tensors.
        """
        key = self._stream_quantizer_key()
        cached = self.__dict__.get("_stream_q")
        if cached is not None and cached[0] == key:
            return cached[1]
        q = self.quantizer.to_frozen()
        device = self._quantizer_device()
        if device is not None:
            q = q.to(device)
        self.__dict__["_stream_q"] = (key, q)
        return q

    def _stream_quantizer_key(self) -> Tuple[int, ...]:
        # storage addresses of the quantizer's tensors: they change when it moves to another device or dtype
        return tuple(t.data_ptr() for t in (*self.quantizer.parameters(), *self.quantizer.buffers()))

    def _quantizer_device(self) -> Optional[torch.device]:
        for t in itertools.chain(self.quantizer.parameters(), self.quantizer.buffers(), self.parameters()):
            return t.device
        return None

    def _apply(self, fn, *args, **kwargs):
        self._drop_stream_quantizer()
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> "Codec":
        self._drop_stream_quantizer()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._drop_stream_quantizer()
        return super()._load_from_state_dict(*args, **kwargs)

    def init_state(self, batch: int = 1) -> Tuple[List[Tensor], List[Tensor]]:
        """Fresh streaming states ``(encoder_state, decoder_state)``; refreshes the frozen quantizer."""
        self._drop_stream_quantizer()
        return self.encoder.init_state(batch), self.decoder.init_state(batch)

    @torch.no_grad()
    def encode_step(self, wav: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream ``wav [B, C, t]`` (any ``t``) through the encoder; returns the complete code frames.

        The concatenated codes equal ``encode`` of the concatenated audio (zero look-ahead: a frame's
        code is emitted as soon as its last sample arrives).
        """
        z, state = self.encoder.step(wav, state)
        return self._stream_quantizer().encode(z.float()), state

    @torch.no_grad()
    def decode_step(self, codes: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream code frames ``[B, K, f]`` through the decoder: the raw decoder stream (functional core).

        Returns ``f * hop_length`` samples of the decoded signal delayed by ``decoder_delay`` (the first
        ``decoder_delay`` samples of a stream are its pre-roll); use :meth:`streaming` for aligned output.
        """
        z_q = self._stream_quantizer().decode(codes.long())
        return self.decoder.step(z_q, state)

    @torch.no_grad()
    def decode_flush(self, state: List[Tensor]) -> Tensor:
        """The last ``decoder_delay`` samples of a decoder stream, ``[B, C, decoder_delay]``: what no further
        frame completes (the decoded signal ends with the frames that exist). Does not change ``state``."""
        flush = getattr(self.decoder, "flush", None)
        if flush is None:
            if self.decoder_delay:
                raise TypeError(f"{type(self.decoder).__name__} declares delay={self.decoder_delay} but has no "
                                "flush(state) returning its last `delay` samples")
            b = state[0].shape[0] if state else 1
            return torch.zeros(b, self.channels, 0, device=state[0].device if state else None)
        return flush(state)

    def streaming(self, batch: int = 1) -> "StreamingSession":
        """A streaming session: ``with codec.streaming(1) as s: codes = s.encode(chunk); wav = s.decode(codes)``,
        then ``codes, wav = s.flush()`` at the end of the stream (see :class:`StreamingSession`)."""
        return StreamingSession(self, batch)


class StreamingSession:
    """A stream through a codec's functional core whose outputs are the offline ones, in order.

    ``core`` is a :class:`Codec` or anything with the same streaming core (``init_state(batch)``,
    ``encode_step``, ``decode_step``, ``decode_flush``, ``hop_length``, ``channels``, ``decoder_delay``,
    ``num_codebooks``), e.g. the exported TorchScript artifact (:class:`sonotok.export.runtime.StreamRunner`).
    This class is the one place where the decoder's delay is aligned:

    * ``encode(wav [B, C, t]) -> codes [B, K, f]``: the frames completed by this chunk;
    * ``decode(codes [B, K, f]) -> wav [B, C, n]``: the next samples of the decoded signal
      (:meth:`Codec.decode`). The decoder's pre-roll (its first ``decoder_delay`` samples, before time
      zero) is dropped, so the first calls of a stream return fewer samples than ``f * hop_length``;
    * ``flush() -> (codes, wav)``: ends the stream in each direction the session was used in: the encoder's
      last partial frame is zero-padded to a whole frame (as :meth:`Codec.encode` pads) and its codes
      returned (and decoded, if the session decodes); then the decoder's last ``decoder_delay`` samples.

    After ``flush()``, the concatenated ``encode`` outputs equal ``Codec.encode`` of the concatenated audio,
    and the concatenated ``decode`` outputs plus the flushed audio equal ``Codec.decode`` of all decoded
    codes (float tolerance), their last ``decoder_delay`` samples included. ``reset()`` starts a new
    stream; leaving the ``with`` block (or ``close()``) drops the state, and a closed session refuses calls.
    """

    def __init__(self, core, batch: int = 1):
        self.core = core
        self.batch = int(batch)
        self.hop_length = int(core.hop_length)
        self.channels = int(core.channels)
        self.delay = int(core.decoder_delay)
        self.closed = False
        self.reset()

    # context manager: `with codec.streaming(1) as s:`
    def __enter__(self) -> "StreamingSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        """Start a new stream: fresh states (silence before the first sample), nothing pending."""
        self.enc_state, self.dec_state = self.core.init_state(self.batch)
        self.samples_in = 0  # audio samples given to encode()
        self.decoding = False  # decode() was called: flush() completes the decoded signal
        self._preroll = self.delay  # raw decoder samples still to drop
        self._device: Optional[torch.device] = None
        self.closed = False

    def close(self) -> None:
        """Drop the streaming state; the session refuses further calls until :meth:`reset`."""
        self.enc_state, self.dec_state = [], []
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this streaming session is closed (left its `with` block or flushed): "
                               "call reset() or open a new one with codec.streaming()")

    def _align(self, raw: Tensor) -> Tensor:
        if self._preroll > 0 and raw.shape[-1] > 0:
            k = min(self._preroll, raw.shape[-1])
            self._preroll -= k
            raw = raw[..., k:]
        return raw

    def encode(self, wav: Tensor) -> Tensor:
        """``wav [B, C, t]`` (any ``t >= 0``) -> the ``codes [B, K, f]`` of the frames this chunk completes."""
        self._check_open()
        self._device = wav.device
        self.samples_in += int(wav.shape[-1])
        codes, self.enc_state = self.core.encode_step(wav, self.enc_state)
        return codes

    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K, f]`` -> the next samples of the decoded signal (pre-roll dropped)."""
        self._check_open()
        self._device = codes.device
        self.decoding = True
        raw, self.dec_state = self.core.decode_step(codes, self.dec_state)
        return self._align(raw)

    def flush(self) -> Tuple[Tensor, Tensor]:
        """End the stream: ``(codes [B, K, f], wav [B, C, n])`` (see the class docstring).

        ``codes`` is the encoder's zero-padded last partial frame (empty when the audio filled whole frames
        or the session never encoded); ``wav`` is its decoding plus the decoder's last ``decoder_delay``
        samples (empty when the session never decoded). The session is closed afterwards.
        """
        self._check_open()
        codes = torch.zeros(self.batch, int(self.core.num_codebooks), 0, dtype=torch.long, device=self._device)
        extra = (-self.samples_in) % self.hop_length
        if self.samples_in and extra:
            pad = torch.zeros(self.batch, self.channels, extra, device=self._device)
            codes, self.enc_state = self.core.encode_step(pad, self.enc_state)
        wav = torch.zeros(self.batch, self.channels, 0, device=self._device)
        if self.decoding:
            parts = [self.decode(codes)] if codes.shape[-1] else []
            if self.delay:
                parts.append(self._align(self.core.decode_flush(self.dec_state)))
            if parts:
                wav = torch.cat(parts, -1)
        self.close()
        return codes, wav
