"""Separate audio files with a loaded separator: read at the model's rate, write one file per source.

This is what ``sonotok separate`` runs per input (the command only expands inputs and reports errors).
Any input the audio reader opens is accepted: mono or multichannel (downmixed), any sample rate
(resampled to the model's, the sources written back at the input's rate), any length from one sample up
(long inputs are separated window by window in bounded memory, :func:`~sonotok.models.separation.separate_chunked`).
Files that cannot be read, hold no samples or hold non-finite samples raise :class:`AudioError` naming the
file; a silent input gives silent sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import torch

from sonotok.data.audio import AudioError, audio_info, load_audio, resample, save_audio
from sonotok.models.separation import separate_chunked


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
