"""TorchScript export of a codec that cannot stream (DAC): the offline codec only.

A model whose ``encoder -> quantizer -> decoder`` chain is self-contained but whose convolutions look
ahead (``streamable = False``, e.g. :class:`~sonotok.models.imported.dac.DACCodec`) has no streaming
encoder or decoder; it still exports as one scripted module::

    codec.pt      encode(wav [B, C, T]) -> codes [B, K, ceil(T / hop)]; decode(codes) -> wav
    export.json   sample_rate, hop_length, frame_rate, num_codebooks, codebook_size, "streaming": false,
                  model_id, files, check results

``torch.jit.load("codec.pt")`` needs nothing but torch. Streaming is refused where it is asked for
(:class:`~sonotok.models.imported.dac.StreamingNotSupported` from ``init_state``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from sonotok.data.atomic import atomic_path, atomic_write_text
from sonotok.export.torchscript import codec_metadata
from sonotok.export.wrappers import OfflineCodec
from sonotok.modules.conv import fold_weight_norm


def offline_module(codec: nn.Module) -> OfflineCodec:
    """A folded (weight norm removed), frozen-quantizer copy of ``codec`` as an :class:`OfflineCodec`."""
    frozen_q = codec.quantizer.to_frozen()
    c = copy.deepcopy(codec)
    c.quantizer = frozen_q
    fold_weight_norm(c)
    c.eval()
    for p in c.parameters():
        p.requires_grad_(False)
    return OfflineCodec(c.encoder, c.quantizer, c.decoder, c.hop_length, c.channels)


@torch.no_grad()
def export_offline_torchscript(codec: nn.Module, out_dir, model_id: Optional[str] = None,
                               check: bool = True, seconds: float = 0.5) -> Dict[str, object]:
    """Script and save the offline codec of ``codec`` (left untouched) and write ``export.json``.

    Args:
        codec: a codec with ``encoder``, ``quantizer`` (``to_frozen``) and ``decoder``.
        out_dir: output directory (created).
        model_id: recorded in ``export.json`` (default ``codec.model_id`` or its name).
        check: reload ``codec.pt`` and compare codes and audio with the eager codec on random audio.
        seconds: length of the check signal.

    Returns:
        the ``export.json`` content.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    was_training = codec.training
    codec.eval()
    scripted = torch.jit.script(offline_module(codec))
    with atomic_path(out / "codec.pt") as tmp:
        scripted.save(tmp)
    meta = codec_metadata(codec, model_id=model_id)
    meta.update({"streaming": False, "torchscript": {"codec": "codec.pt"}})
    if check and next(codec.parameters()).device.type == "cpu":
        loaded = torch.jit.load(str(out / "codec.pt"), map_location="cpu")
        g = torch.Generator().manual_seed(0)
        n = int(seconds * codec.sample_rate) + codec.hop_length // 3  # not a whole number of frames
        wav = 0.1 * torch.randn(1, codec.channels, n, generator=g)
        ref = codec.encode(wav)
        codes = loaded.encode(wav)
        meta["torchscript_check"] = {
            "codes_equal": float(torch.equal(codes, ref)),
            "offline_max_abs_diff": float((loaded.decode(ref) - codec.decode(ref)).abs().max()),
        }
    atomic_write_text(out / "export.json", json.dumps(meta, indent=2) + "\n")
    codec.train(was_training)
    return meta
