"""Self-supervised speech encoders (HuBERT, WavLM, wav2vec 2.0) as frozen semantic teachers.

The architectures are torchaudio's (:mod:`torchaudio.models`); the weights come from a local file only:
a torchaudio state dict (what ``torchaudio.pipelines.HUBERT_BASE.get_model()`` holds; save it with
``torch.save(model.state_dict(), path)``), optionally wrapped as ``{"state_dict": ...}`` or
``{"model": ...}``. Fairseq / Hugging Face checkpoints can be converted once with
``torchaudio.models.wav2vec2.utils.import_fairseq_model`` / ``import_huggingface_model``.

References:
    Hsu et al., 2021, "HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of
    Hidden Units". Chen et al., 2022, "WavLM". Baevski et al., 2020, "wav2vec 2.0".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from sonotok.errors import ModelLoadError
from sonotok.semantic.teacher import SemanticTeacher

ARCHITECTURES = (
    "hubert_base", "hubert_large", "hubert_xlarge", "wavlm_base", "wavlm_large",
    "wav2vec2_base", "wav2vec2_large", "wav2vec2_large_lv60k", "wav2vec2_xlsr_300m",
    "wav2vec2_model", "wavlm_model",
)


def build_ssl_model(arch: str, **kwargs: Any) -> torch.nn.Module:
    """A torchaudio SSL architecture by name (``hubert_base``, ``wavlm_base``, ``wav2vec2_model`` + kwargs...)."""
    import torchaudio.models as M

    if arch not in ARCHITECTURES or not hasattr(M, arch):
        raise ValueError(f"unknown SSL architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    return getattr(M, arch)(**kwargs)


def load_ssl_state(path: str | os.PathLike) -> Dict[str, Tensor]:
    """Read a local torchaudio-format state dict, with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such SSL checkpoint (expected a torchaudio state dict .pt/.pth)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path}: not a state dict of tensors")
    return obj


class SSLTeacher(SemanticTeacher):
    """A torchaudio HuBERT / WavLM / wav2vec 2.0 encoder as a frozen teacher (16 kHz in, 50 Hz out).

    Args:
        path: local torchaudio state dict of the architecture.
        arch: torchaudio builder name (``hubert_base``, ``wavlm_base``, ``wav2vec2_base``, ...).
        arch_kwargs: keyword arguments of the builder (e.g. a small ``wav2vec2_model`` for tests).
        layers: transformer layers to average (0-based into ``extract_features``; ``None`` = last).
            X-Codec/SpeechTokenizer use an average of middle layers or layer 9 of HuBERT base.
        cache_dir, normalize: see :class:`~sonotok.semantic.teacher.SemanticTeacher`.
    """

    sample_rate = 16000
    feature_rate = 50.0

    def __init__(self, path: str, arch: str = "hubert_base", arch_kwargs: Optional[Dict[str, Any]] = None,
                 layers: Optional[Sequence[int]] = None, cache_dir: Optional[str] = None, normalize: bool = False):
        super().__init__(layers, cache_dir, normalize)
        self.source = Path(path)
        state = load_ssl_state(path)
        self.model = build_ssl_model(arch, **dict(arch_kwargs or {}))
        own = self.model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ModelLoadError(
                f"{path}: not a {arch} checkpoint (missing {len(missing)}: {missing[:3]}, "
                f"unexpected {len(unexpected)}: {unexpected[:3]})"
            )
        bad = [k for k in own if own[k].shape != state[k].shape]
        if bad:
            raise ModelLoadError(f"{path}: tensor {bad[0]} has shape {list(state[bad[0]].shape)}, "
                                 f"{arch} expects {list(own[bad[0]].shape)}")
        self.model.load_state_dict(state)
        self.dim = int(self.model.encoder.feature_projection.projection.out_features)
        self.freeze()

    def hidden_states(self, wav: Tensor) -> List[Tensor]:
        feats, _ = self.model.extract_features(wav)
        return list(feats)
