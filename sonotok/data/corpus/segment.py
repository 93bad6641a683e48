"""Speech analysis for the corpus builder: utterance segmentation, pure-tone detection, trimming, joining
short clips of one speaker, loudness normalisation.

All functions take mono float arrays ``[T]`` and a sample rate; nothing here reads or writes files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0  # EBU R128 programme loudness
PEAK_LIMIT = 0.89  # -1 dBFS

__all__ = [
    "is_pure_tone",
    "join_clips",
    "normalize_loudness",
    "nonspeech_by_name",
    "segment_speech",
    "tonality_score",
    "trim_silence",
]


def _frame_db(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    fr = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    return 10.0 * np.log10(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12)


def segment_speech(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    min_seconds: float = 0.5,
    target_min_seconds: float = 1.0,
    max_seconds: float = 15.0,
    split_pause: float = 0.5,
    pad: float = 0.1,
    rel_threshold_db: float = 40.0,
    abs_threshold_db: float = -55.0,
) -> list[tuple[int, int]]:
    """Find speech utterances in a mono signal.

    Frames (20 ms, 10 ms hop) louder than ``max(peak - rel_threshold_db, abs_threshold_db)`` dBFS are voiced;
    gaps under 150 ms are bridged and islands under 30 ms dropped. Voiced regions are grouped into
    utterances, splitting at pauses of at least ``split_pause`` seconds once the utterance is
    ``target_min_seconds`` long, and always before it would exceed ``max_seconds``. Each utterance keeps
    ``pad`` seconds of context (never past the middle of the neighbouring pause).

    Args:
        x: ``[T]`` float samples.
        sr: sample rate.

    Returns:
        list of ``(start, end)`` sample indices, utterances shorter than ``min_seconds`` dropped.
    """
    hop = sr // 100
    frame = 2 * hop
    db = _frame_db(x, frame, hop)
    if db.size == 0:
        return []
    thr = max(db.max() - rel_threshold_db, abs_threshold_db)
    voiced = db > thr
    # runs of voiced frames
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < 15:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    merged = [r for r in merged if r[1] - r[0] >= 3]
    if not merged:
        return []
    to_s = hop / sr
    groups: list[list[int]] = [list(merged[0])]
    for a, b in merged[1:]:
        cur = groups[-1]
        gap = (a - cur[1]) * to_s
        cur_len = (cur[1] - cur[0]) * to_s
        if (gap >= split_pause and cur_len >= target_min_seconds) or (b - cur[0]) * to_s > max_seconds:
            groups.append([a, b])
        else:
            cur[1] = b
    # frames -> samples, with padding bounded by the neighbours
    out: list[tuple[int, int]] = []
    n = len(x)
    padn = int(pad * sr)
    for i, (a, b) in enumerate(groups):
        s, e = a * hop, min(n, b * hop + frame)
        lo = 0 if i == 0 else (groups[i - 1][1] * hop + frame + s) // 2
        hi = n if i == len(groups) - 1 else (e + groups[i + 1][0] * hop) // 2
        s, e = max(lo, s - padn), min(hi, e + padn)
        # chop what is still too long (no pause inside) into equal pieces
        length = e - s
        pieces = max(1, int(np.ceil(length / (max_seconds * sr))))
        step = length // pieces
        for k in range(pieces):
            ps = s + k * step
            pe = e if k == pieces - 1 else ps + step
            if pe - ps >= min_seconds * sr:
                out.append((int(ps), int(pe)))
    return out


def is_pure_tone(x: np.ndarray, sr: int = SAMPLE_RATE, threshold: float = 0.72) -> bool:
    """True for beeps, DTMF, chimes: :func:`tonality_score` at or above ``threshold``."""
    return tonality_score(x, sr) >= threshold


def tonality_score(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Fraction of loud frames that look like a pure tone (beeps, DTMF, chimes: concentrated, frequency-stable
    spectral peaks) rather than speech.

    For each loud frame (2048-point FFT, 16 ms hop) the peak frequency is interpolated; a frame pair is
    "tonal" when the peak moves by less than 2 Hz and holds over half the frame's energy (+-3 bins), or when
    the two strongest peaks both move by less than 2 Hz and together hold over 80% (DTMF, two-tone).
    Speech pitch glides, so real prompts score below 0.67 (median 0.22); the Asterisk beeps, 2-tone
    signals and confbridge chimes score 0.75-1.0.
    """
    n, hop = 2048, 256
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    fr = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[::hop] * np.hanning(n)
    p = np.abs(np.fft.rfft(fr, axis=1)) ** 2 + 1e-20
    e = p.sum(1)
    p = p[e > e.max() * 1e-2]
    if len(p) < 3:
        return 0.0
    r = np.arange(len(p))

    def peak(q):
        i = np.clip(q.argmax(1), 3, q.shape[1] - 4)
        a, b, c = np.log(q[r, i - 1]), np.log(q[r, i]), np.log(q[r, i + 1])
        f = (i + 0.5 * (a - c) / (a - 2 * b + c + 1e-12)) * sr / n
        return i, f, np.stack([q[r, i + k] for k in range(-3, 4)], axis=1).sum(1)

    total = p.sum(1)
    i1, f1, w1 = peak(p)
    rest = p.copy()
    for k in range(-3, 4):
        rest[r, i1 + k] = 1e-20
    _, f2, w2 = peak(rest)  # second peak: two-tone signals, DTMF
    still1 = np.abs(np.diff(f1)) < 2.0
    still2 = np.abs(np.diff(f2)) < 2.0
    one = (w1 / total)[1:] > 0.5
    two = ((w1 + w2) / total)[1:] > 0.8
    stable = still1 & (one | (two & still2))
    return float(stable.mean())


_NONSPEECH_NAME = re.compile(r"(^beep|^dtmf|^tone|\dtone$|-tone$|^silence)", re.IGNORECASE)


def nonspeech_by_name(rel: str) -> bool:
    """Names of non-speech prompts: ``beep*``, ``*-2tone``, ``dtmf*``, files under ``silence/``."""
    parts = Path(rel).parts
    if any(p.lower() == "silence" for p in parts[:-1]):
        return True
    return bool(_NONSPEECH_NAME.search(Path(rel).stem))


def trim_silence(
    x: np.ndarray, sr: int, pad: float = 0.05, rel_threshold_db: float = 40.0, abs_threshold_db: float = -55.0
) -> tuple[int, int]:
    """``(start, end)`` of the part between the first and last voiced 20 ms frame (louder than
    ``max(peak - rel_threshold_db, abs_threshold_db)`` dBFS), widened by ``pad`` seconds; ``(0, 0)`` when
    nothing is voiced."""
    hop = max(1, sr // 100)
    frame = 2 * hop
    db = _frame_db(x, frame, hop)
    if db.size == 0:
        return 0, 0
    voiced = np.flatnonzero(db > max(db.max() - rel_threshold_db, abs_threshold_db))
    if voiced.size == 0:
        return 0, 0
    padn = int(pad * sr)
    return max(0, int(voiced[0]) * hop - padn), min(len(x), int(voiced[-1]) * hop + frame + padn)


def join_clips(
    lengths: list[int],
    sr: int,
    rng: np.random.Generator,
    min_seconds: float = 2.0,
    max_seconds: float = 6.0,
    gap: tuple[float, float] = (0.1, 0.3),
) -> list[list[tuple[int, int]]]:
    """Plan utterances of ``min_seconds``-``max_seconds`` from short clips of one speaker, in order.

    Args:
        lengths: clip lengths in samples.
        rng: draws the gap before each clip after the first (uniform in ``gap`` seconds).

    Returns:
        one list per utterance of ``(clip index, gap in samples before it)``; a clip longer than
        ``max_seconds`` stands alone; a short remainder is appended to the previous utterance when it fits,
        else kept alone (the caller drops what is still too short).
    """
    lo, hi = int(min_seconds * sr), int(max_seconds * sr)
    plans: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    cur_len = 0
    for i, n in enumerate(lengths):
        g = int(rng.uniform(*gap) * sr)
        if cur and cur_len + g + n > hi:
            plans.append(cur)
            cur, cur_len = [], 0
        if not cur:
            cur, cur_len = [(i, 0)], n
        else:
            cur.append((i, g))
            cur_len += g + n
        if cur_len >= lo:
            plans.append(cur)
            cur, cur_len = [], 0
    if cur:
        if plans:
            last = plans[-1]
            total = sum(lengths[j] + gg for j, gg in last)
            extra = sum(lengths[j] for j, _ in cur) + int(np.mean(gap) * sr) * len(cur)
            if total + extra <= hi:
                last += [(j, int(np.mean(gap) * sr)) for j, _ in cur]
                return plans
        plans.append(cur)
    return plans


def normalize_loudness(x: np.ndarray, sr: int, target_lufs: float = TARGET_LUFS, peak: float = PEAK_LIMIT) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness (ITU-R BS.1770 via ``torchaudio.functional.loudness``),
    then down so the peak stays below ``peak``. Clips under 0.4 s (one loudness block) and silent clips are
    scaled to an RMS of the same nominal level instead."""
    import torchaudio.functional as AF

    x = np.asarray(x, dtype=np.float32)
    if x.size == 0 or not np.any(x):
        return x
    lufs = float("nan")
    if x.size >= int(0.4 * sr):
        lufs = float(AF.loudness(torch.from_numpy(x)[None], sr))
    if np.isfinite(lufs):
        gain = 10 ** ((target_lufs - lufs) / 20)
    else:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        gain = 10 ** ((target_lufs + 0.7) / 20) / max(rms, 1e-9)  # RMS in dBFS ~ LUFS + 0.7 for speech
    y = x * gain
    top = float(np.abs(y).max())
    if top > peak:
        y = y * (peak / top)
    return y.astype(np.float32)
