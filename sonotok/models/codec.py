"""The neural audio codec: encoder -> quantizer -> decoder.

References:
    Zeghidour et al., 2021, "SoundStream: An End-to-End Neural Audio Codec".
    Défossez et al., 2022, "High Fidelity Neural Audio Compression" (EnCodec).
    Kumar et al., 2023, "High-Fidelity Audio Compression with Improved RVQGAN" (DAC).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer


class Codec(nn.Module):
    """A codec made of separate modules composed by Hydra.

    The encoder maps ``wav [B, C, T]`` to a latent ``[B, D, T / hop_length]``, the quantizer turns it
    into codes ``[B, K, F]`` and back, the decoder maps the latent back to ``[B, C, F * hop_length]``.
    Encoder and decoder implement the streaming protocol (``init_state`` / ``step``), see
    :mod:`sonotok.modules.streaming`.

    Args:
        encoder: module with attributes ``hop_length`` and ``dimension``.
        quantizer: a :class:`~sonotok.quantizers.base.Quantizer` over ``dimension`` channels.
        decoder: module mapping the latent back to audio.
        sample_rate: audio sample rate in Hz.
        channels: audio channels.
        decoder_delay: extra algorithmic delay of the decoder in samples (0 for causal conv decoders).
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
        decoder_delay: int = 0,
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
        self.decoder_delay = int(decoder_delay)
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

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: one frame (the encoder waits for a whole hop) plus the decoder delay."""
        return self.hop_length + self.decoder_delay

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def bitrate(self, num_codebooks: Optional[int] = None) -> float:
        """Bits per second at ``num_codebooks`` (default all)."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
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
        """``codes [B, K, F] -> wav [B, C, F * hop_length]`` (cropped to ``length`` when given)."""
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
    def _stream_quantizer(self) -> nn.Module:
        """The frozen quantizer used while streaming, built once per :meth:`init_state`.

        ``Quantizer.encode`` rebuilds its frozen twin on every call (cheap offline, too slow per
        20 ms frame). It is kept outside the module tree so it never enters ``state_dict``.
        """
        q = self.__dict__.get("_stream_q")
        if q is None:
            q = self.quantizer.to_frozen()
            self.__dict__["_stream_q"] = q
        return q

    def init_state(self, batch: int = 1) -> Tuple[List[Tensor], List[Tensor]]:
        """Fresh streaming states ``(encoder_state, decoder_state)``; refreshes the frozen quantizer."""
        self.__dict__["_stream_q"] = self.quantizer.to_frozen()
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
        """Stream code frames ``[B, K, f]`` through the decoder; returns ``f * hop_length`` samples."""
        z_q = self._stream_quantizer().decode(codes.long())
        return self.decoder.step(z_q, state)

    @contextmanager
    def streaming(self, batch: int = 1) -> Iterator["StreamingSession"]:
        """Eager convenience: ``with codec.streaming(1) as s: codes = s.encode(chunk)``."""
        yield StreamingSession(self, batch)


class StreamingSession:
    """Holds the streaming states of a codec for eager use (see :meth:`Codec.streaming`)."""

    def __init__(self, codec: Codec, batch: int):
        self.codec = codec
        self.enc_state, self.dec_state = codec.init_state(batch)

    def encode(self, wav: Tensor) -> Tensor:
        codes, self.enc_state = self.codec.encode_step(wav, self.enc_state)
        return codes

    def decode(self, codes: Tensor) -> Tensor:
        wav, self.dec_state = self.codec.decode_step(codes, self.dec_state)
        return wav
