"""The semantic teacher interface: a frozen pre-trained speech encoder whose frame features are
distilled into (or fed to) a codec.

A teacher is always frozen and in eval mode, never part of an optimizer, a checkpoint, a model
directory or an exported artifact: codecs and training modules hold it by reference
(:func:`attach_teacher`), outside their module tree, so ``state_dict()`` and ``parameters()`` never see it.

References:
    Zhang et al., 2024, "SpeechTokenizer: Unified Speech Tokenizer for Speech Language Models".
    Ye et al., 2025, "Codec Does Matter: Exploring the Semantic Shortcoming of Codec for Audio Language
    Model" (X-Codec).
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resample_frames(feats: Tensor, num_frames: int) -> Tensor:
    """Resample features ``[B, D, T']`` along time to ``[B, D, num_frames]``.

    Average pooling when the teacher is faster than the codec (each codec frame gets the mean of the
    teacher frames it covers), linear interpolation when it is slower.
    """
    if feats.shape[-1] == num_frames:
        return feats
    if feats.shape[-1] > num_frames:
        return F.adaptive_avg_pool1d(feats, num_frames)
    return F.interpolate(feats, size=num_frames, mode="linear", align_corners=False)


def attach_teacher(owner: nn.Module, teacher: Optional["SemanticTeacher"], name: str = "teacher") -> None:
    """Store ``teacher`` on ``owner`` without registering it as a submodule (no state_dict, no
    parameters, no optimizer, no export)."""
    owner.__dict__[name] = teacher


class SemanticTeacher(nn.Module, abc.ABC):
    """Base class of frozen teachers.

    Subclasses implement :meth:`hidden_states` (``wav [B, T]`` at :attr:`sample_rate` -> one
    ``[B, T', D]`` tensor per layer) and set :attr:`sample_rate`, :attr:`feature_rate`, :attr:`dim`.

    Args:
        layers: indices into :meth:`hidden_states` to average (``None``: the last one). Negative
            indices count from the end. Layer averaging follows SpeechTokenizer/X-Codec practice.
        cache_dir: directory for the per-file feature cache of :meth:`features_for_file`.
        normalize: per-frame standardisation of the features (zero mean, unit
            variance over the feature axis), which makes MSE targets comparable across teachers.
    """

    sample_rate: int = 16000
    feature_rate: float = 50.0
    dim: int = 0

    def __init__(self, layers: Optional[Sequence[int]] = None, cache_dir: Optional[str] = None,
                 normalize: bool = False):
        super().__init__()
        self.layers = list(layers) if layers is not None else None
        self.cache_dir = cache_dir
        self.normalize = bool(normalize)

    # --------------------------------------------------------------- frozen behaviour
    def freeze(self) -> "SemanticTeacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "SemanticTeacher":
        """Always stays in eval mode."""
        return super().train(False)

    @abc.abstractmethod
    def hidden_states(self, wav: Tensor) -> List[Tensor]:
        """All hidden states ``[B, D, T']`` of the frozen model for ``wav [B, 1, T]`` at its own rate."""

    def identity(self) -> str:
        """A string identifying the teacher and its options (feature cache key)."""
        return json.dumps({"class": type(self).__name__, "layers": self.layers, "normalize": self.normalize,
                           "source": str(getattr(self, "source", ""))}, sort_keys=True)

    # --------------------------------------------------------------- features
    @torch.no_grad()
    def features(self, wav: Tensor, sample_rate: Optional[int] = None) -> Tensor:
        """``wav [B, C, T]`` or ``[B, T]`` -> features ``[B, D, T']`` at :attr:`feature_rate`."""
        if wav.dim() == 3:
            wav = wav.mean(1)
        if wav.dim() != 2:
            raise ValueError(f"teacher expects audio [B, C, T] or [B, T], got {list(wav.shape)}")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(sample_rate), self.sample_rate)
        p = next(iter(self.parameters()), None)
        if p is not None and p.device != wav.device:
            self.to(wav.device)
        hs = self.hidden_states(wav.float())
        idx = self.layers if self.layers is not None else [-1]
        x = torch.stack([hs[i] for i in idx]).mean(0)
        if self.normalize:
            x = F.layer_norm(x, x.shape[-1:])
        return x.transpose(1, 2).contiguous()

    @torch.no_grad()
    def forward(self, wav: Tensor, sample_rate: Optional[int] = None, num_frames: Optional[int] = None,
                frame_rate: Optional[float] = None) -> Tensor:
        """Features ``[B, D, F]`` resampled/pooled to the codec's frames.

        Args:
            wav: audio ``[B, C, T]`` (or ``[B, T]``).
            sample_rate: the rate of ``wav`` (default: the teacher's).
            num_frames: codec frames ``F`` to produce (wins over ``frame_rate``).
            frame_rate: codec frame rate; ``F = ceil(T / sample_rate * frame_rate)``.
        """
        feats = self.features(wav, sample_rate)
        if num_frames is None and frame_rate is not None:
            sr = sample_rate or self.sample_rate
            num_frames = int(np.ceil(wav.shape[-1] / sr * frame_rate - 1e-6))
        return resample_frames(feats, num_frames) if num_frames is not None else feats

    # --------------------------------------------------------------- disk cache
    def _cache_path(self, path: Path) -> Optional[Path]:
        if not self.cache_dir:
            return None
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.identity()}".encode()).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.npy"

    def features_for_file(self, path: str | os.PathLike) -> Tensor:
        """Teacher features ``[D, T']`` of a whole audio file (at :attr:`feature_rate`), cached on disk
        under ``cache_dir`` keyed by the file's path, size, mtime and the teacher's identity."""
        from sonotok.data.atomic import atomic_path
        from sonotok.data.audio import load_audio

        path = Path(path)
        cp = self._cache_path(path)
        if cp is not None and cp.is_file():
            return torch.from_numpy(np.load(cp))
        wav = load_audio(path, self.sample_rate)  # [C, T]
        feats = self.features(wav.mean(0, keepdim=True))[0].cpu()
        if cp is not None:
            with atomic_path(cp) as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats.numpy().astype(np.float32))
        return feats

    def cache_corpus(self, files: Sequence[str | os.PathLike]) -> int:
        """Fill the disk cache for ``files``; returns how many were computed or already present."""
        if not self.cache_dir:
            raise ValueError("cache_corpus needs a teacher built with cache_dir")
        for f in files:
            self.features_for_file(f)
        return len(files)
