"""Word and character error rates of ASR hypotheses, robust to Whisper's hallucination loops.

On badly reconstructed audio Whisper often decodes a loop ("Mm-mm-mm-...", "you, you, you, ...") up to its token
limit: a single such utterance adds dozens of insertions, so a plain corpus WER above 1 says more about how
many loops occurred than about intelligibility. :func:`score_utterances` reports, next to the plain WER:

- ``wer_capped``: each utterance's errors capped at its reference length (an utterance counts at most as
  "all words wrong"), summed over the set: in [0, 1];
- ``cer_capped``: the same on characters (letters, digits, apostrophes and single spaces);
- ``loop_fraction``: the share of hypotheses that are loops (:func:`is_loop`: zlib compression ratio above 2.4,
  openai-whisper's ``compression_ratio_threshold``, or one 1-4 word n-gram repeated 4 times in a row).

:func:`paired_bootstrap` compares two systems on the same utterances (resampling utterances, paired).
"""

from __future__ import annotations

import re
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["char_errors", "compression_ratio", "edit_distance", "is_loop", "max_tokens_for", "normalize_text",
           "paired_bootstrap", "score_utterances", "word_errors"]

LOOP_COMPRESSION_RATIO = 2.4


def normalize_text(s: str) -> str:
    """Lower case, hyphens to spaces, only ``a-z0-9'`` and single spaces."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", s.lower().replace("-", " ")).split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    d = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(hyp) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (ref[i - 1] != hyp[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(hyp)]


def word_errors(ref: str, hyp: str) -> Tuple[int, int]:
    """``(word edit distance, reference words)`` after :func:`normalize_text`."""
    r, h = normalize_text(ref).split(), normalize_text(hyp).split()
    return edit_distance(r, h), len(r)


def char_errors(ref: str, hyp: str) -> Tuple[int, int]:
    """``(character edit distance, reference characters)`` after :func:`normalize_text`."""
    r, h = normalize_text(ref), normalize_text(hyp)
    return edit_distance(r, h), len(r)


def compression_ratio(text: str) -> float:
    """``len(utf-8 bytes) / len(zlib-compressed bytes)`` (openai-whisper's repetition measure)."""
    b = text.encode("utf-8")
    return len(b) / max(1, len(zlib.compress(b)))


def is_loop(hyp: str, max_ngram: int = 4, repeats: int = 4) -> bool:
    """Whether ``hyp`` is a hallucination loop: compression ratio above 2.4, or some n-gram of 1..``max_ngram``
    words (after :func:`normalize_text`) repeated ``repeats`` times in a row."""
    if compression_ratio(hyp) > LOOP_COMPRESSION_RATIO:
        return True
    w = normalize_text(hyp).split()
    for n in range(1, max_ngram + 1):
        for i in range(0, len(w) - n * repeats + 1):
            g = w[i: i + n]
            if all(w[i + k * n: i + (k + 1) * n] == g for k in range(1, repeats)):
                return True
    return False


def score_utterances(refs: Sequence[str], hyps: Sequence[str]) -> Dict[str, object]:
    """Scores of ``hyps`` against ``refs`` (one per utterance).

    Returns:
        ``wer`` (total word errors / reference words), ``wer_capped``, ``cer_capped``, ``loop_fraction``,
        ``words``, ``chars``, ``utterances`` and ``per_utterance``: a list of ``{"word_errors", "words",
        "char_errors", "chars", "loop"}``.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references for {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no utterances to score")
    per: List[Dict[str, object]] = []
    for r, h in zip(refs, hyps):
        we, wn = word_errors(r, h)
        ce, cn = char_errors(r, h)
        per.append({"word_errors": we, "words": wn, "char_errors": ce, "chars": cn, "loop": is_loop(h)})
    words = sum(int(p["words"]) for p in per)
    chars = sum(int(p["chars"]) for p in per)
    if words == 0:
        raise ValueError("the references have no words")
    return {
        "wer": sum(int(p["word_errors"]) for p in per) / words,
        "wer_capped": sum(min(int(p["word_errors"]), int(p["words"])) for p in per) / words,
        "cer_capped": sum(min(int(p["char_errors"]), int(p["chars"])) for p in per) / max(chars, 1),
        "loop_fraction": sum(bool(p["loop"]) for p in per) / len(per),
        "words": words, "chars": chars, "utterances": len(per), "per_utterance": per,
    }


def paired_bootstrap(errors_a: Sequence[float], errors_b: Sequence[float], words: Sequence[float],
                     n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> Dict[str, float]:
    """Paired bootstrap over utterances of the difference of two systems' error rates (``a - b``).

    Args:
        errors_a, errors_b: per-utterance errors of systems a and b (e.g. capped word errors, seed-averaged).
        words: per-utterance reference lengths.
        n_resamples: bootstrap resamples.
        level: two-sided confidence level.

    Returns:
        ``diff`` (a - b on the full set), ``lo`` / ``hi`` (the percentile interval), ``p_a_better`` (share of
        resamples where a has the lower rate).
    """
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, words))
    if not (a.shape == b.shape == n.shape) or a.ndim != 1 or a.size == 0:
        raise ValueError(f"per-utterance arrays must be 1-d of one length, got {a.shape}, {b.shape}, {n.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(int(n_resamples), a.size))
    tot = n[idx].sum(1).clip(min=1e-9)
    d = (a[idx].sum(1) - b[idx].sum(1)) / tot
    q = (1 - level) / 2
    return {"diff": float((a.sum() - b.sum()) / max(n.sum(), 1e-9)), "lo": float(np.quantile(d, q)),
            "hi": float(np.quantile(d, 1 - q)), "p_a_better": float((d < 0).mean())}


def max_tokens_for(duration_s: float, tokens_per_second: float = 8.0, extra: int = 10,
                   limit: Optional[int] = 448) -> int:
    """A decoding cap proportional to the audio's duration (about twice the token rate of fast speech), so a
    hallucination loop cannot run to Whisper's 448-token limit on a 2 s utterance."""
    n = int(np.ceil(float(duration_s) * tokens_per_second)) + int(extra)
    return min(n, limit) if limit else n
