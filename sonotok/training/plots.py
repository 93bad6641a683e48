"""Figures logged during training and written by evaluation (matplotlib, Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def log_mel(wav: Tensor, sample_rate: int, n_mels: int = 80) -> Tensor:
    """Log-mel spectrogram ``[n_mels, frames]`` of a mono-mixed waveform (for plots)."""
    import torchaudio

    x = wav.detach().float().cpu()
    if x.dim() > 1:
        x = x.reshape(-1, x.shape[-1]).mean(0)
    n_fft = 1024 if sample_rate > 16000 else 512
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels)(x)
    return torch.log10(mel.clamp_min(1e-5))


def spectrogram_figure(ref: Tensor, est: Tensor, sample_rate: int):
    """A two-row figure: log-mel of the reference and of the reconstruction."""
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, x, title in zip(axes, (ref, est), ("original", "reconstruction")):
        ax.imshow(log_mel(x, sample_rate).numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    return fig
