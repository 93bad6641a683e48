"""Token-to-frame alignment of a text teacher's token embeddings with a codec's frames.

DM-Codec (Ahasan et al., 2024) aligns the language model's token representations with the speech frames by
interpolation: the utterance's tokens are spread uniformly over the utterance's frames. That is what
:func:`interpolate_tokens` does (linear interpolation at the frame centres, or ``nearest``: each token
repeated over its span; more tokens than frames are average-pooled). A training crop then takes its slice of
the utterance's frames (:func:`align_to_crop`), with a mask that is false where the crop runs past the end
of the utterance (zero padding).

With token times (a forced alignment: :mod:`sonotok.semantic.forced_alignment` times each word of the
transcript with Whisper, and each word's tokens share its span), :func:`interpolate_at_times` places each
token at its own time instead of spreading the tokens uniformly, linearly interpolating between token
centres; frames before the first token's word starts or after the last one's ends (silence) are masked.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sonotok.semantic.teacher import resample_frames

__all__ = ["align_batch", "align_to_crop", "interpolate_at_times", "interpolate_tokens", "utterance_frames"]

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


def interpolate_at_times(tokens: Tensor, times: Sequence[float], num_frames: int, frame_rate: float,
                         mode: str = "linear") -> Tensor:
    """Token embeddings ``[D, L]`` with token centre ``times`` (seconds, non-decreasing) -> ``[D, num_frames]``
    at the frame centres ``(j + 0.5) / frame_rate``: linear interpolation between the two tokens around each
    frame (``nearest``: the closer one); frames before the first / after the last centre take that token."""
    if tokens.dim() != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must be [D, L] with L >= 1, got {list(tokens.shape)}")
    t = torch.as_tensor(list(times), dtype=torch.float64).flatten()
    if t.numel() != tokens.shape[1]:
        raise ValueError(f"{t.numel()} token times for {tokens.shape[1]} tokens")
    if t.numel() > 1 and bool((t[1:] < t[:-1] - 1e-9).any()):
        raise ValueError("token times must be non-decreasing")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = tokens.float()
    if t.numel() == 1:
        return x[:, :1].expand(-1, num_frames).clone()
    fc = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / float(frame_rate)
    hi = torch.searchsorted(t.contiguous(), fc, right=True).clamp(1, t.numel() - 1)
    lo = hi - 1
    gap = (t[hi] - t[lo]).clamp_min(1e-9)
    a = ((fc - t[lo]) / gap).clamp(0.0, 1.0)
    if mode == "nearest":
        a = (a >= 0.5).double()
    a = a.to(x.dtype)
    return x[:, lo] * (1 - a) + x[:, hi] * a


def align_to_crop(tokens: Tensor, num_frames: int, frame_rate: float, offset: float = 0.0,
                  duration: Optional[float] = None, mode: str = "linear", times: Optional[Sequence[float]] = None,
                  span: Optional[Tuple[float, float]] = None) -> Tuple[Tensor, Tensor]:
    """Token embeddings ``[D, L]`` of an utterance -> the frames ``[D, num_frames]`` of a crop of it.

    Args:
        tokens: the utterance's token embeddings ``[D, L]``.
        num_frames: frames of the crop (the codec's ``F``).
        frame_rate: codec frames per second.
        offset: where the crop starts in the utterance, in seconds.
        duration: the utterance's duration in seconds (``None``: the crop is the whole utterance).
        mode: see :func:`interpolate_tokens`.
        times: the tokens' centre times in the utterance (seconds; a forced alignment); ``None``: spread
            uniformly (:func:`interpolate_tokens`).
        span: ``(start, end)`` of the speech in the utterance (seconds): frames whose centre is outside are
            masked (the words' silence around the speech has no token); ``None``: no such mask.

    Returns:
        ``(features [D, num_frames], mask [num_frames] bool)``: frames past the utterance's end are zero and
        masked out.
    """
    total = utterance_frames(duration, frame_rate) if duration is not None else int(num_frames)
    if times is not None:
        full = interpolate_at_times(tokens, times, total, frame_rate, mode)
    else:
        full = interpolate_tokens(tokens, total, mode)
    start = max(0, int(round(float(offset) * float(frame_rate))))
    part = full[:, start: start + num_frames]
    out = full.new_zeros(full.shape[0], num_frames)
    mask = torch.zeros(num_frames, dtype=torch.bool, device=full.device)
    out[:, : part.shape[1]] = part
    mask[: part.shape[1]] = True
    if span is not None:
        fc = (torch.arange(num_frames, dtype=torch.float64) + start + 0.5) / float(frame_rate)
        mask &= (fc >= float(span[0])) & (fc <= float(span[1]))
    return out, mask


def align_batch(tokens: Sequence[Optional[Tensor]], num_frames: int, frame_rate: float,
                offsets: Optional[Sequence[float]] = None, durations: Optional[Sequence[Optional[float]]] = None,
                dim: Optional[int] = None, mode: str = "linear",
                times: Optional[Sequence[Optional[Sequence[float]]]] = None,
                spans: Optional[Sequence[Optional[Tuple[float, float]]]] = None) -> Tuple[Tensor, Tensor]:
    """:func:`align_to_crop` for a batch: ``tokens[b]`` ``[D, L_b]`` or ``None`` (no transcript: all masked);
    ``times[b]`` / ``spans[b]``: that item's token times and speech span (``None``: uniform, unmasked).

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
        tb = times[b] if times is not None else None
        sb = spans[b] if spans is not None else None
        f, m = align_to_crop(t, num_frames, frame_rate, off, None if dur is None else float(dur), mode, tb, sb)
        feats[b], mask[b] = f.to(feats.dtype).cpu(), m.cpu()
    return feats, mask
