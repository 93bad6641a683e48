"""Separate audio files with a loaded separator: read at the model's rate, write one file per source.

This is what ``sonotok separate`` runs per input (the command only expands inputs and reports errors).
Any input the audio reader opens is accepted: mono or multichannel (downmixed), any sample rate
(resampled to the model's, the sources written back at the input's rate), any length from one sample up
(long inputs are separated window by window in bounded memory, :func:`separate_chunked`).
Files that cannot be read, hold no samples or hold non-finite samples raise :class:`AudioError` naming the
file; a silent input gives silent sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import torch
from torch import Tensor, nn

from sonotok.data.audio import AudioError, audio_info, load_audio, resample, save_audio
from sonotok.models.separation import context_samples


def separate_chunked(model: nn.Module, mix: Tensor, chunk: int, context: int | None = None,
                     fade: int | None = None) -> Tensor:
    """Separate a long ``mix [B, 1, T]`` window by window in bounded memory.

    The model sees windows of at most ``chunk + 2 * context`` samples: window ``i`` covers
    ``[i*chunk - context, (i+1)*chunk + context)`` and contributes to ``[i*chunk - fade/2, (i+1)*chunk +
    fade/2)`` with complementary raised-cosine cross-fades of ``fade`` samples around each boundary (the
    rest of the context is only context). Before it is added, each window's sources are permuted to match
    the previous window's on the ``2 * context`` samples both computed (a separator's output order is
    arbitrary per call). With ``context - fade/2`` at least :func:`context_samples` the result equals the
    whole-signal forward for a model whose normalisation is frame-local (``norm=channel``); with gLN / cLN
    the statistics differ per window (measured in ``docs/separation.md``).

    Args:
        model: ``forward(mix [B, 1, t]) -> [B, S, t]``.
        mix: ``[B, 1, T]``.
        chunk: hop between windows (samples, > 0; rounded up to a multiple of the model's ``hop_length`` so
            every window starts on the whole signal's frame grid).
        context: extra samples on each side (default: :func:`context_samples` + ``fade // 2``; rounded up
            likewise).
        fade: cross-fade length (default half of :func:`context_samples` (or of ``context``), at most
            ``chunk / 2``; made even; ``fade / 2 <= context``).

    Returns:
        ``[B, S, T]``.
    """
    import itertools
    import math

    if mix.dim() == 2:
        mix = mix.unsqueeze(1)
    batch, _, total = mix.shape
    chunk = int(chunk)
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0 samples, got {chunk}")
    if fade is None:
        fade = min(context_samples(model) if context is None else int(context), chunk) // 2
    fade = 2 * (int(fade) // 2)
    if context is None:
        context = context_samples(model) + fade // 2
    context = int(context)
    hop = int(getattr(model, "hop_length", 1))  # windows start on the model's frame grid
    chunk, context = -(-chunk // hop) * hop, -(-context // hop) * hop
    if context < 1 or fade // 2 > context or fade > chunk:
        raise ValueError(f"need context >= 1 and fade/2 <= context and fade <= chunk (chunk={chunk}, "
                         f"context={context}, fade={fade})")
    if total <= chunk + 2 * context:
        return model(mix)
    half = fade // 2
    ramp = torch.sin(0.5 * math.pi * (torch.arange(fade, dtype=mix.dtype) + 0.5) / max(fade, 1)) ** 2
    out: Tensor | None = None
    prev: Tensor | None = None  # previous window's output on [start - context, start + context)
    starts = list(range(0, total, chunk))
    for i, start in enumerate(starts):
        a, e = max(0, start - context), min(total, start + chunk + context)
        y = model(mix[..., a:e])  # [B, S, e - a]
        if out is None:
            out = y.new_zeros(batch, y.shape[1], total)
        if prev is not None:
            cur = y[..., : prev.shape[-1]]
            perms = list(itertools.permutations(range(y.shape[1])))
            num = torch.stack([(prev * cur[:, list(p)]).sum(-1).sum(-1) for p in perms], -1)  # [B, P]
            best = num.argmax(-1)
            y = torch.stack([y[b, list(perms[int(best[b])])] for b in range(batch)])
        w = y.new_ones(e - a)
        lo, hi = start - a, min(start + chunk, total) - a  # this window's core [lo, hi) in window coords
        w[: max(lo - half, 0)] = 0.0
        w[hi + half :] = 0.0
        if i > 0 and half:
            w[lo - half : lo + half] = ramp
        if i + 1 < len(starts) and half:
            w[hi - half : hi + half] = 1.0 - ramp
        out[..., a:e] += y * w
        nxt = start + chunk
        if i + 1 < len(starts):  # what the next window shares with this one: [its start, this end)
            prev = y[..., max(0, nxt - context) - a :]
    assert out is not None
    return out


@dataclass
class SeparationResult:
    """What :func:`separate_file` wrote: ``paths`` (one per source) and ``warnings`` (e.g. a silent input)."""

    paths: List[Path]
    warnings: List[str] = field(default_factory=list)

    def __iter__(self):  # ``for p in separate_file(...)`` / ``list(...)`` give the paths
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        return self.paths[i]


def separate_wave(model, wav: torch.Tensor, chunk_seconds: float | None = 10.0, device: str = "cpu") -> torch.Tensor:
    """Separate ``wav [T]`` or ``[1, T]`` at the model's rate into ``[S, T]`` (windowed above ``chunk_seconds``)."""
    x = wav.reshape(1, 1, -1).to(device)
    with torch.no_grad():
        if chunk_seconds is None:
            est = model(x)
        else:
            est = separate_chunked(model, x, max(1, int(round(chunk_seconds * model.sample_rate))))
    return est[0].float().cpu()


def separate_file(model, path: str | Path, out_dir: str | Path, fmt: str = "wav", rate: str = "input",
                  normalize: bool = False, device: str = "cpu", chunk_seconds: float | None = 10.0) -> SeparationResult:
    """Separate ``path`` into ``out_dir/<stem>_s1.<fmt>`` ... ``_sS.<fmt>`` (atomic writes).

    Args:
        model: a separator (``forward(mix [B, 1, T]) -> [B, S, T]``, ``sample_rate``, ``num_sources``).
        rate: ``"input"`` writes at the input's sample rate, ``"model"`` at the model's.
        normalize: scale down sources whose peak would clip (without it a clipped source is a warning).
        chunk_seconds: window hop for long inputs (bounded memory); ``None``: the whole file at once.

    Returns:
        a :class:`SeparationResult` (iterates over the written paths, one per source).

    Raises:
        AudioError: the input cannot be read, has no samples or has NaN / infinite samples (names the file).
    """
    path, out_dir = Path(path), Path(out_dir)
    info = audio_info(path)
    wav = load_audio(path, model.sample_rate, channels="downmix")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{path}: holds NaN or infinite samples; cannot separate")
    if wav.shape[-1] == 0:
        raise AudioError(f"{path}: no samples left after resampling to {model.sample_rate} Hz")
    warnings: List[str] = []
    if float(wav.abs().max()) == 0.0:
        warnings.append(f"{path}: input is silent; the sources are silent")
    est = separate_wave(model, wav, chunk_seconds, device)  # [S, T]
    if rate == "input" and info.sample_rate != model.sample_rate:
        est = resample(est, model.sample_rate, info.sample_rate)
        sr = info.sample_rate
        # resampling rounds the length: give back exactly as many samples as the input had
        est = est[..., : info.frames] if est.shape[-1] >= info.frames else torch.nn.functional.pad(
            est, (0, info.frames - est.shape[-1]))
    else:
        sr = model.sample_rate
    peak = est.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
    if normalize:
        est = torch.where(peak > 0.99, est / peak * 0.99, est)
    elif float(peak.max()) > 1.0:
        warnings.append(f"{path}: a source peaks at {float(peak.max()):.2f} and is clipped (use --normalize)")
    written = []
    for s in range(est.shape[0]):
        dst = out_dir / f"{path.stem}_s{s + 1}.{fmt}"
        save_audio(dst, est[s : s + 1], sr)
        written.append(dst)
    return SeparationResult(written, warnings)
