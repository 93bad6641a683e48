"""What a codec costs: parameters, MFLOP/s of the encoder and the decoder, algorithmic latency.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one offline pass over
``seconds`` of audio (convolutions and matrix products, 2 FLOPs per multiply-accumulate; element-wise
operations are not counted, as in the published complexity figures this is compared with, e.g. the
LRAC 2025 ceilings of 700 MFLOP/s for a whole codec and 300 MFLOP/s for its decoder). The quantizer's
nearest-code search is counted with the encoder.
"""

from __future__ import annotations

import copy
from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from sonotok.modules.conv import fold_weight_norm


def _params(module) -> int:
    return int(sum(p.numel() for p in module.parameters())) if module is not None else 0


@torch.inference_mode()
def codec_cost(codec, seconds: float = 2.0) -> Dict[str, float]:
    """Parameters, MFLOP/s (encoder incl. quantizer search, decoder) and latency of ``codec``.

    Args:
        codec: a model with ``sample_rate``, ``channels``, ``encode(wav [B, C, T])`` and ``decode(codes)``.
        seconds: audio length of the counted pass (the rate is per second of audio).

    Returns:
        ``{"parameters", "encoder_parameters", "quantizer_parameters", "decoder_parameters",
        "encoder_mflops_per_s", "decoder_mflops_per_s", "total_mflops_per_s", "latency_ms"}``.
    """
    # weight-norm parametrizations do not run under the FLOP counter's dispatch mode; the folded copy
    # computes the same convolutions
    original = codec
    codec = fold_weight_norm(copy.deepcopy(codec)).eval()
    dev = next(iter(codec.parameters())).device
    sr, ch = int(codec.sample_rate), int(getattr(codec, "channels", 1))
    x = torch.randn(1, ch, int(seconds * sr), device=dev) * 0.1
    with FlopCounterMode(display=False) as enc_count:
        codes = codec.encode(x)
    with FlopCounterMode(display=False) as dec_count:
        codec.decode(codes)
    enc = enc_count.get_total_flops() / seconds / 1e6
    dec = dec_count.get_total_flops() / seconds / 1e6
    return {
        "parameters": _params(original),  # as stored (weight norm's g and v counted like the checkpoint)
        "encoder_parameters": _params(getattr(original, "encoder", None)),
        "quantizer_parameters": _params(getattr(original, "quantizer", None)),
        "decoder_parameters": _params(getattr(original, "decoder", None)),
        "encoder_mflops_per_s": enc,
        "decoder_mflops_per_s": dec,
        "total_mflops_per_s": enc + dec,
        "latency_ms": float(getattr(codec, "latency_ms", float("nan"))),
    }
