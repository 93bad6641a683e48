"""Encode and decode with one codec: tensors, padded batches, long files streamed in bounded memory.

* :func:`encode_batch` encodes a list of items of different lengths as one zero-padded batch and crops
  each item's codes to ``ceil(len / hop)`` frames. The default models are causal and
  :meth:`Codec.encode` pads to whole frames, so the codes equal those of each item encoded alone.
  Non-causal models (``codec.causal`` False: X-Codec, whose teacher sees the whole input) are encoded one
  item at a time, so the same holds for them.
* :func:`encode_file` reads a file; files longer than ``long_file_seconds`` are read block by block and
  streamed through a :meth:`Codec.streaming` session (bounded memory, identical codes; the last partial
  frame is flushed by zero-padding it to a whole hop, exactly like :meth:`Codec.pad_to_frames`). A
  non-causal model cannot stream: such a file is an :class:`~sonotok.errors.AudioError` naming it.
* :func:`decode_codes`, :func:`decode_batch` turn codes back into the decoded signal, :meth:`Codec.decode`
  (long code files stream through a session in bounded memory, with the same samples at the same positions).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import Tensor

from sonotok.data.audio import audio_info, load_audio, resample
from sonotok.errors import AudioError, CodesError


# ------------------------------------------------------------------------------------------ encoding
def _device(codec) -> torch.device:
    p = next(codec.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _as_ct(codec, wav: Tensor | np.ndarray) -> Tensor:
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[0] != codec.channels:
        raise ValueError(f"expected one item as [T] or [{codec.channels}, T], got {list(wav.shape)}")
    return wav


@torch.no_grad()
def encode_batch(codec, wavs: Sequence[Tensor | np.ndarray], sample_rate: Optional[int] = None,
                 num_codebooks: Optional[int] = None) -> List[Tensor]:
    """Encode items of different lengths in one zero-padded batch.

    Args:
        codec: a :class:`~sonotok.models.Codec`.
        wavs: items ``[T_i]`` or ``[C, T_i]``.
        sample_rate: the rate of every item (resampled per item to the model's rate).
        num_codebooks: keep the first ``K`` codebooks.

    Returns:
        one ``codes [K, ceil(T_i' / hop)]`` int64 tensor per item (``T_i'``: length at the model's rate),
        identical to encoding each item alone.
    """
    if len(wavs) == 0:
        return []
    dev = _device(codec)
    items = [_as_ct(codec, w) for w in wavs]
    if sample_rate is not None and int(sample_rate) != codec.sample_rate:
        items = [resample(w, int(sample_rate), codec.sample_rate) for w in items]
    lengths = [int(w.shape[-1]) for w in items]
    if min(lengths) <= 0:
        raise ValueError(f"empty item in batch (lengths {lengths})")
    # an imported EnCodec reflects the end of a partial last frame, as the reference does: zero padding would
    # change that frame's code, so such models, like non-causal ones, get one item at a time, unpadded
    reflects_end = bool(getattr(codec, "reflects_end", False))
    if len(items) > 1 and (reflects_end or not getattr(codec, "causal", True)):
        # padding would reach the codes of a non-causal model: one item at a time
        return [encode_batch(codec, [w], num_codebooks=num_codebooks)[0] for w in items]
    if reflects_end:
        codes = codec.encode(items[0][None].to(dev), num_codebooks=num_codebooks).cpu()
        return [codes[0, :, : codec.num_frames(lengths[0])].clone()]
    t = max(codec.num_frames(n) for n in lengths) * codec.hop_length
    batch = torch.stack([F.pad(w, (0, t - w.shape[-1])) for w in items]).to(dev)
    codes = codec.encode(batch, num_codebooks=num_codebooks).cpu()
    return [codes[i, :, : codec.num_frames(n)].clone() for i, n in enumerate(lengths)]


@torch.no_grad()
def encode_stream(codec, blocks: Iterable[Tensor], num_codebooks: Optional[int] = None) -> Tuple[Tensor, int]:
    """Stream blocks ``[C, t]`` (at the model's rate) through a :meth:`Codec.streaming` session.

    Memory is bounded by the block size (plus the codes). The final partial frame is zero-padded to a whole
    hop (the session's ``flush``), so the result equals ``codec.encode`` on the concatenated audio.

    Returns:
        ``(codes [K, F] int64, num_samples)``.
    """
    dev = _device(codec)
    out: List[Tensor] = []
    total = 0
    with codec.streaming(1) as session:
        for block in blocks:
            block = _as_ct(codec, block)
            if block.shape[-1] == 0:
                continue
            total += int(block.shape[-1])
            codes = session.encode(block[None].to(dev))
            if codes.shape[-1]:
                out.append(codes[0].cpu())
        if total == 0:
            raise ValueError("no audio in stream")
        codes, _ = session.flush()
        out.append(codes[0].cpu())
    codes = torch.cat(out, dim=-1)
    if num_codebooks is not None:
        codes = codes[: codec.quantizer.check_num_codebooks(num_codebooks)]
    assert codes.shape[-1] == codec.num_frames(total), (codes.shape, total)
    return codes, total


def read_blocks(path: str | os.PathLike, block_frames: int, channels: str = "downmix",
                num_channels: int = 1) -> Iterator[Tensor]:
    """Read a file block by block as float32 ``[C, t]`` (file's own rate), checking every block.

    Raises:
        AudioError: as :func:`sonotok.data.audio.load_audio` (header problems, NaN/Inf, channel policy).
    """
    p = Path(path)
    info = audio_info(p)
    if info.channels != num_channels and channels == "reject":
        raise AudioError(p, f"wrong channel count: {info.channels} channels, expected {num_channels} "
                            "(channels='reject')")
    n = 0
    try:
        for data in sf.blocks(str(p), blocksize=block_frames, dtype="float32", always_2d=True):
            if not np.isfinite(data).all():
                kind = "NaN" if np.isnan(data).any() else "Inf"
                raise AudioError(p, f"{kind} samples (at {n / info.sample_rate:.2f}s)")
            n += data.shape[0]
            wav = torch.from_numpy(np.ascontiguousarray(data.T))
            if wav.shape[0] != num_channels:
                wav = wav.mean(0, keepdim=True) if channels == "downmix" else wav[:num_channels]
            yield wav
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(p, f"cannot decode audio data ({str(e).splitlines()[-1][:160]})") from e
    if n == 0:
        raise AudioError(p, "zero-length audio (no decodable samples; truncated data?)")


@dataclass
class EncodedFile:
    """Codes of one file with what was learned while reading it."""

    codes: Tensor  # [K, F] int64
    num_samples: int  # at the model's rate
    duration: float  # source seconds
    sample_rate: int  # source rate


def encode_file_info(codec, path: str | os.PathLike, num_codebooks: Optional[int] = None,
                     channels: str = "downmix", long_file_seconds: float = 60.0,
                     chunk_seconds: float = 10.0) -> EncodedFile:
    """:func:`encode_file` returning :class:`EncodedFile` (codes, length, source duration and rate)."""
    info = audio_info(path)
    if info.duration > long_file_seconds:
        if not getattr(codec, "causal", True):
            raise AudioError(path, f"{info.duration:.1f} s is longer than long_file_seconds="
                                   f"{long_file_seconds:g}: {getattr(codec, 'name', 'this model')} is not causal "
                                   "(it sees the whole input), so it cannot stream a long file in bounded "
                                   "memory; split the file or raise long_file_seconds (--long-file-seconds)")
        block = max(1, int(chunk_seconds * info.sample_rate))
        if info.sample_rate == codec.sample_rate:
            blocks = read_blocks(path, block, channels, codec.channels)
        else:
            # Resampling in blocks would not match whole-file resampling bit for bit: resample the whole
            # file (float32 audio) and still stream the encoder (its activations dominate memory).
            wav = load_audio(path, codec.sample_rate, channels=channels)
            step = max(1, int(chunk_seconds * codec.sample_rate))
            blocks = (wav[:, i: i + step] for i in range(0, wav.shape[-1], step))
        codes, n = encode_stream(codec, blocks, num_codebooks)
        return EncodedFile(codes, n, info.duration, info.sample_rate)
    wav = load_audio(path, codec.sample_rate, channels=channels)
    codes = encode_batch(codec, [wav], num_codebooks=num_codebooks)[0]
    return EncodedFile(codes, int(wav.shape[-1]), info.duration, info.sample_rate)


def encode_file(codec, path: str | os.PathLike, num_codebooks: Optional[int] = None, channels: str = "downmix",
                long_file_seconds: float = 60.0, chunk_seconds: float = 10.0) -> Tensor:
    """Encode one audio file -> ``codes [K, F]`` (int64).

    Files longer than ``long_file_seconds`` are streamed in ``chunk_seconds`` blocks (bounded memory,
    identical codes).

    Raises:
        AudioError: a file that cannot be used as audio (names the file and the reason).
    """
    return encode_file_info(codec, path, num_codebooks, channels, long_file_seconds, chunk_seconds).codes


# ------------------------------------------------------------------------------------------ decoding
@torch.no_grad()
def decode_codes(codec, codes: Tensor | np.ndarray, length: Optional[int] = None, chunk_frames: int = 0) -> Tensor:
    """``codes [K, F] -> wav [C, T]``: the decoded signal :meth:`Codec.decode` (``T = length`` or ``F * hop``).

    ``chunk_frames > 0`` streams through a :meth:`Codec.streaming` session in chunks of that many frames
    (bounded memory for long code files) and flushes it: the same samples at the same positions as offline
    decoding, the decoder's delay aligned and its last ``decoder_delay`` samples included (float tolerance).
    """
    dev = _device(codec)
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes).long().to(dev)
    if codes.dim() != 2:
        raise CodesError(f"codes must be [K, F], got {list(codes.shape)}")
    if chunk_frames and codes.shape[-1] > chunk_frames:
        parts = []
        with codec.streaming(1) as session:
            for i in range(0, codes.shape[-1], chunk_frames):
                parts.append(session.decode(codes[None, :, i: i + chunk_frames])[0].cpu())
            parts.append(session.flush()[1][0].cpu())
        wav = torch.cat(parts, -1)
    else:
        wav = codec.decode(codes[None])[0].cpu()
    return wav[..., :length] if length is not None else wav


@torch.no_grad()
def decode_batch(codec, codes_list: Sequence[Tensor | np.ndarray], lengths: Optional[Sequence[int]] = None
                 ) -> List[Tensor]:
    """Decode items ``[K, F_i]`` in padded batches -> one ``[C, T_i]`` per item (``T_i = lengths[i]`` or
    ``F_i * hop``), each equal to :meth:`Codec.decode` of the item alone.

    The decoders are causal, so padding (code 0) never reaches earlier samples. A decoder with a delay
    (inverse STFT) overlap-adds each frame into the ``decoder_delay`` samples before it, so padding frames
    would change the last ``decoder_delay`` samples of a shorter item: such models batch only items of
    equal length.
    """
    if len(codes_list) == 0:
        return []
    dev = _device(codec)
    items = [torch.as_tensor(np.asarray(c) if not isinstance(c, Tensor) else c).long() for c in codes_list]
    ks = {c.shape[0] for c in items}
    if len(ks) != 1:
        raise CodesError(f"all items of a batch need the same number of codebooks, got {sorted(ks)}")
    frames = [int(c.shape[-1]) for c in items]
    groups = [list(range(len(items)))]
    if getattr(codec, "decoder_delay", 0) > 0:
        groups = [[i for i, f in enumerate(frames) if f == n] for n in sorted(set(frames))]
    out: List[Optional[Tensor]] = [None] * len(items)
    for group in groups:
        f = max(frames[i] for i in group)
        batch = torch.stack([F.pad(items[i], (0, f - frames[i])) for i in group]).to(dev)
        wav = codec.decode(batch).cpu()
        for j, i in enumerate(group):
            n = frames[i] * codec.hop_length if lengths is None else int(lengths[i])
            out[i] = wav[j, :, :n].clone()
    return out


def frames_for_seconds(codec, seconds: float) -> int:
    """Code frames for ``seconds`` of audio at the model's rate."""
    return int(math.ceil(seconds * codec.sample_rate / codec.hop_length))
