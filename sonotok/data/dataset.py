"""Audio datasets over folders and JSONL manifests: fixed-length random crops for training, whole files
for validation.

Sources are scanned once (``soundfile.info`` per file, cached per folder for the life of the process);
manifests carry their durations. Crops are deterministic per ``(seed, epoch, index)``: the epoch reaches
worker processes through :class:`EpochSampler`, which yields ``(index, epoch)`` pairs (Lightning calls its
``set_epoch`` every epoch).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sonotok.data.audio import audio_info, load_audio
from sonotok.data.sources import list_audio_files, scan_audio
from sonotok.errors import AudioError

__all__ = [
    "AudioDataset", "AudioItem", "EpochSampler", "SpeakerBalancedSampler", "collate_pad", "scan_sources",
    "total_hours",
]


@dataclass(frozen=True)
class AudioItem:
    """One file of a dataset: absolute path, duration in seconds, and manifest metadata."""

    path: str
    duration: float
    speaker: str | None = None
    language: str | None = None
    split: str | None = None
    bandwidth: str | None = None
    text: str | None = None


_FOLDER_CACHE: dict[tuple[str, float], list[AudioItem]] = {}


def _folder_items(folder: Path) -> list[AudioItem]:
    real = os.path.realpath(folder)
    key = (real, folder.stat().st_mtime)
    if key not in _FOLDER_CACHE:
        _FOLDER_CACHE[key] = [AudioItem(str(f), audio_info(f).duration) for f in list_audio_files(real)]
    return _FOLDER_CACHE[key]


def _row_item(row: dict) -> AudioItem:
    dur = row.get("duration")
    if dur is None:
        dur = audio_info(row["path"]).duration
    return AudioItem(
        row["path"], float(dur), row.get("speaker"), row.get("language"), row.get("split"),
        row.get("bandwidth"), row.get("text"),
    )


def scan_sources(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[AudioItem]:
    """List the audio files of a folder (recursive, every extension in
    :data:`~sonotok.data.audio.AUDIO_EXTENSIONS`), a JSONL manifest, a single audio file, or a list of those,
    in a deterministic order (:func:`sonotok.data.sources.scan_audio`).

    Raises:
        AudioError: a source that does not exist or is not a folder/manifest/audio file, or a bad manifest line.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[AudioItem] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            items += _folder_items(p)
            continue
        for e in scan_audio(p):
            items.append(_row_item(e.row) if e.row is not None else AudioItem(e.path, audio_info(e.path).duration))
    return items


def _seed_for(seed: int, epoch: int, index: int) -> int:
    h = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF_FFFF


class AudioDataset(Dataset):
    """Audio files as ``[C, T]`` float32 tensors at one sample rate.

    Args:
        sources: a folder (recursive wav/flac/ogg), a JSONL manifest (``path`` relative to the manifest,
            optional ``duration``/``speaker``/``language``/``split``), an audio file, or a list of those.
        sample_rate: output rate (files are resampled with torchaudio).
        segment_seconds: crop length; shorter files are zero-padded at the end. ``None``: whole files.
        channels: ``"downmix"``, ``"reject"``, ``"first"`` or ``"keep"`` (see :func:`load_audio`).
        split: keep only manifest rows with this ``split``.
        random_crop: random crop offsets (deterministic per seed, epoch and index); ``False``: from the start.
        seed: crop seed.
        min_seconds: drop files shorter than this.
        max_seconds: with ``segment_seconds=None``, truncate whole files to this length.
        bandwidth: keep only manifest rows with this ``bandwidth`` (``"wideband"`` keeps the 8 kHz
            telephone sources of the corpus out of 16 kHz training); rows without the field are kept.
        augment: a callable ``(wav [C, T], sample_rate, numpy Generator) -> wav`` applied to every item
            (e.g. :class:`sonotok.data.augment.Augmentation`); seeded per ``(seed, epoch, index)``.

    Items are ``[C, T]`` tensors; index with ``(index, epoch)`` (as :class:`EpochSampler` does) or set
    :meth:`set_epoch` for single-process loading.

    Raises:
        AudioError: naming the file, for missing, unreadable or bad audio.
    """

    def __init__(
        self,
        sources: str | os.PathLike | Sequence[str | os.PathLike],
        sample_rate: int,
        segment_seconds: float | None = 1.0,
        channels: str = "downmix",
        split: str | None = None,
        random_crop: bool = True,
        seed: int = 0,
        min_seconds: float | None = None,
        max_seconds: float | None = None,
        bandwidth: str | None = None,
        augment: Callable[[torch.Tensor, int, np.random.Generator], torch.Tensor] | None = None,
    ):
        items = scan_sources(sources)
        if split is not None:
            items = [it for it in items if it.split == split]
        if bandwidth is not None:
            items = [it for it in items if it.bandwidth in (None, bandwidth)]
        if min_seconds is not None:
            items = [it for it in items if it.duration >= min_seconds]
        if not items:
            raise AudioError(
                str(sources), f"no audio files found (split={split}, min_seconds={min_seconds}, bandwidth={bandwidth})"
            )
        self.items = items
        self.sample_rate = int(sample_rate)
        self.segment_seconds = segment_seconds
        self.segment_length = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.channels = channels
        self.random_crop = random_crop
        self.seed = int(seed)
        self.max_seconds = max_seconds
        self.augment = augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def total_seconds(self) -> float:
        return float(sum(it.duration for it in self.items))

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for crops when indexed with a plain int."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        if isinstance(index, (tuple, list)):
            index, epoch = int(index[0]), int(index[1])
        else:
            index, epoch = int(index), self.epoch
        wav = self._load(index, epoch)
        if self.augment is not None:
            rng = np.random.default_rng(_seed_for(self.seed + 1, epoch, index))
            wav = self.augment(wav, self.sample_rate, rng)
        return wav

    def crop_offset(self, index: int, epoch: int) -> float:
        """Start in seconds of item ``index``'s training crop in ``epoch`` (0 for whole files or no random crop)."""
        item = self.items[index]
        if self.segment_length is None or not self.random_crop or item.duration <= self.segment_seconds:
            return 0.0
        g = torch.Generator().manual_seed(_seed_for(self.seed, epoch, index))
        return float(torch.rand((), generator=g)) * (item.duration - self.segment_seconds)

    def _load(self, index: int, epoch: int) -> torch.Tensor:
        item = self.items[index]
        if self.segment_length is None:
            wav = load_audio(item.path, self.sample_rate, self.channels, duration=self.max_seconds)
            if self.max_seconds is not None:
                wav = wav[..., : int(round(self.max_seconds * self.sample_rate))].contiguous()
            return wav
        seg_s = self.segment_seconds
        offset = self.crop_offset(index, epoch)
        # read a little more than needed so resampling has full context, then cut exactly
        wav = load_audio(item.path, self.sample_rate, self.channels, offset=offset, duration=seg_s + 0.01)
        n = self.segment_length
        if wav.shape[-1] >= n:
            return wav[..., :n].contiguous()
        return torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))


class EpochSampler(Sampler):
    """Shuffles (or not) per epoch and yields ``(index, epoch)`` so workers crop deterministically.

    Args:
        length: dataset size.
        shuffle: random order per epoch (seeded by ``seed`` and the epoch).
        seed: order seed.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0):
        self.length = int(length)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_seed_for(self.seed, self.epoch, -1))
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = range(self.length)
        epoch = self.epoch
        for i in order:
            yield (i, epoch)


class SpeakerBalancedSampler(Sampler):
    """Draws ``(index, epoch)`` so every speaker is equally likely, whatever its number of files or hours.

    Each draw picks a speaker (uniformly, or with probability proportional to ``seconds ** alpha``), then one
    of its files with probability proportional to the file's duration (so crops are uniform in time within a
    speaker). Items without a speaker count as speakers of their own. Deterministic per ``(seed, epoch)``.

    Args:
        items: the dataset's :class:`AudioItem` s (``AudioDataset.items``).
        num_samples: draws per epoch (default: ``len(items)``).
        seed: draw seed.
        alpha: 0 (default): every speaker equally likely; 1: as likely as its share of the hours (plain
            sampling by time); in between tempers how often speakers with little audio repeat.
    """

    def __init__(self, items: Sequence[AudioItem], num_samples: int | None = None, seed: int = 0,
                 alpha: float = 0.0):
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it.speaker if it.speaker is not None else f"\0{i}", []).append(i)
        self.speakers = sorted(groups)
        self._index = [np.asarray(groups[s], dtype=np.int64) for s in self.speakers]
        self._weights = []
        for idx in self._index:
            w = np.asarray([max(float(items[i].duration), 1e-3) for i in idx])
            self._weights.append(w / w.sum())
        seconds = np.asarray([sum(max(float(items[i].duration), 1e-3) for i in idx) for idx in self._index])
        p = seconds ** float(alpha)
        self._speaker_p = p / p.sum()
        self.num_samples = int(num_samples if num_samples is not None else len(items))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng(_seed_for(self.seed, self.epoch, -2))
        spk = rng.choice(len(self.speakers), size=self.num_samples, p=self._speaker_p)
        epoch = self.epoch
        for s in spk.tolist():
            yield (int(rng.choice(self._index[s], p=self._weights[s])), epoch)


def collate_pad(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``[C, T_i]`` tensors at the end to ``[B, C, max T]``; also return lengths ``[B]`` (int64)."""
    if len(batch) == 0:
        raise ValueError("collate_pad got an empty batch")
    chans = {int(w.shape[0]) for w in batch}
    if len(chans) != 1 or any(w.dim() != 2 for w in batch):
        raise ValueError(
            f"collate_pad needs [C, T] tensors with one C; got shapes {[tuple(w.shape) for w in batch]}"
        )
    lengths = torch.tensor([w.shape[-1] for w in batch], dtype=torch.long)
    out = batch[0].new_zeros(len(batch), chans.pop(), int(lengths.max()))
    for i, w in enumerate(batch):
        out[i, :, : w.shape[-1]] = w
    return out, lengths


def total_hours(dataset: AudioDataset) -> float:
    """Hours of audio in a dataset (from the scanned durations)."""
    return dataset.total_seconds / 3600.0
