"""Separate audio files with a loaded separator: read at the model's rate, write one file per source.

This is what ``sonotok separate`` runs per input (the command only expands inputs and reports errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch

from sonotok.data.audio import audio_info, load_audio, resample, save_audio


def separate_file(model, path: str | Path, out_dir: str | Path, fmt: str = "wav", rate: str = "input",
                  normalize: bool = False, device: str = "cpu") -> List[Path]:
    """Separate ``path`` into ``out_dir/<stem>_s1.<fmt>`` ... ``_sS.<fmt>`` (atomic writes).

    Args:
        model: a separator (``forward(mix [B, T]) -> [B, S, T]``, ``sample_rate``, ``num_sources``).
        rate: ``"input"`` writes at the input's sample rate, ``"model"`` at the model's.
        normalize: scale down sources whose peak would clip.

    Returns:
        the written paths, one per source.

    Raises:
        AudioError: the input cannot be read (names the file).
    """
    path, out_dir = Path(path), Path(out_dir)
    info = audio_info(path)
    wav = load_audio(path, model.sample_rate, channels="downmix")
    with torch.no_grad():
        est = model(wav.unsqueeze(0).to(device))[0].float().cpu()  # [S, T]
    if rate == "input" and info.sample_rate != model.sample_rate:
        est = resample(est, model.sample_rate, info.sample_rate)
        sr = info.sample_rate
    else:
        sr = model.sample_rate
    if normalize:
        peak = est.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        est = torch.where(peak > 0.99, est / peak * 0.99, est)
    written = []
    for s in range(est.shape[0]):
        dst = out_dir / f"{path.stem}_s{s + 1}.{fmt}"
        save_audio(dst, est[s : s + 1], sr)
        written.append(dst)
    return written
