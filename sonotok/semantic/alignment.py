"""Token-to-frame alignment of a text teacher's token embeddings with a codec's frames.

DM-Codec (Ahasan et al., 2024) aligns the language model's token representations with the speech frames by
interpolation: the utterance's tokens are spread uniformly over the utterance's frames. That is what
:func:`interpolate_tokens` does (linear interpolation at the frame centres, or ``nearest``: each token
repeated over its span; more tokens than frames are average-pooled). A training crop then takes its slice of
the utterance's frames (:func:`align_to_crop`), with a mask that is false where the crop runs past the end
of the utterance (zero padding). No forced alignment is used: the corpus has no phone-level alignments and
the interpolation is the paper's method.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sonotok.semantic.teacher import resample_frames

__all__ = ["align_batch", "align_to_crop", "interpolate_tokens", "utterance_frames"]

MODES = ("linear", "nearest")


def utterance_frames(duration: float, frame_rate: float) -> int:
    """Codec frames covering ``duration`` seconds: ``ceil(duration * frame_rate)`` (at least 1)."""
    return max(1, int(math.ceil(float(duration) * float(frame_rate) - 1e-6)))


def interpolate_tokens(tokens: Tensor, num_frames: int, mode: str = "linear") -> Tensor:
    """Spread token embeddings ``[D, L]`` uniformly over ``num_frames`` frames -> ``[D, num_frames]``.

    ``linear``: linear interpolation between token centres (``align_corners=False``: frame ``j`` samples the
    token axis at ``(j + 0.5) * L / F - 0.5``); ``nearest``: frame ``j`` takes token ``floor(j * L / F)``.
    When there are more tokens than frames, tokens are average-pooled into the frames.
    """
    if tokens.dim() != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must be [D, L] with L >= 1, got {list(tokens.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = tokens[None].float()
    if mode == "nearest" and x.shape[-1] < num_frames:
        return F.interpolate(x, size=num_frames, mode="nearest")[0]
    return resample_frames(x, num_frames)[0]


def align_to_crop(tokens: Tensor, num_frames: int, frame_rate: float, offset: float = 0.0,
                  duration: Optional[float] = None, mode: str = "linear") -> Tuple[Tensor, Tensor]:
    """Token embeddings ``[D, L]`` of an utterance -> the frames ``[D, num_frames]`` of a crop of it.

    Args:
        tokens: the utterance's token embeddings ``[D, L]``.
        num_frames: frames of the crop (the codec's ``F``).
        frame_rate: codec frames per second.
        offset: where the crop starts in the utterance, in seconds.
        duration: the utterance's duration in seconds (``None``: the crop is the whole utterance).
        mode: see :func:`interpolate_tokens`.

    Returns:
        ``(features [D, num_frames], mask [num_frames] bool)``: frames past the utterance's end are zero and
        masked out.
    """
    total = utterance_frames(duration, frame_rate) if duration is not None else int(num_frames)
    full = interpolate_tokens(tokens, total, mode)
    start = max(0, int(round(float(offset) * float(frame_rate))))
    part = full[:, start: start + num_frames]
    out = full.new_zeros(full.shape[0], num_frames)
    mask = torch.zeros(num_frames, dtype=torch.bool, device=full.device)
    out[:, : part.shape[1]] = part
    mask[: part.shape[1]] = True
    return out, mask


def align_batch(tokens: Sequence[Optional[Tensor]], num_frames: int, frame_rate: float,
                offsets: Optional[Sequence[float]] = None, durations: Optional[Sequence[Optional[float]]] = None,
                dim: Optional[int] = None, mode: str = "linear") -> Tuple[Tensor, Tensor]:
    """:func:`align_to_crop` for a batch: ``tokens[b]`` ``[D, L_b]`` or ``None`` (no transcript: all masked).

    Returns:
        ``(features [B, D, num_frames], mask [B, num_frames])``.
    """
    present = [t for t in tokens if t is not None]
    if dim is None:
        if not present:
            raise ValueError("align_batch: no item has tokens and no dim was given")
        dim = int(present[0].shape[0])
    feats = torch.zeros(len(tokens), dim, num_frames)
    mask = torch.zeros(len(tokens), num_frames, dtype=torch.bool)
    for b, t in enumerate(tokens):
        if t is None or t.shape[1] == 0:
            continue
        off = float(offsets[b]) if offsets is not None else 0.0
        dur = durations[b] if durations is not None else None
        f, m = align_to_crop(t, num_frames, frame_rate, off, None if dur is None else float(dur), mode)
        feats[b], mask[b] = f.to(feats.dtype).cpu(), m.cpu()
    return feats, mask
