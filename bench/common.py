"""Helpers shared by the benchmark scripts in ``bench/``."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def manifest_files(manifest: Path, per_speaker: int, min_s: float = 2.0, max_s: float = 8.0) -> list[str]:
    """``per_speaker`` files of ``min_s``-``max_s`` seconds from each speaker of ``manifest``, spread over its list.

    Args:
        manifest: a corpus split manifest (JSON lines with ``path``, ``speaker``, ``duration``).
        per_speaker: how many files to take from each speaker.
        min_s: shortest duration kept, in seconds.
        max_s: longest duration kept, in seconds.

    Returns:
        Audio file paths, speakers in sorted order.
    """
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    by_spk: dict[str, list[dict]] = {}
    for r in rows:
        if min_s <= float(r["duration"]) <= max_s:
            by_spk.setdefault(r["speaker"], []).append(r)
    out = []
    for spk in sorted(by_spk):
        items = by_spk[spk]
        step = max(1, len(items) // per_speaker)
        out += [str(manifest.parent / items[i * step]["path"]) for i in range(min(per_speaker, len(items)))]
    return out


def build(overrides: list[str]):
    """Composes the Hydra config from ``overrides``; returns ``(cfg, module, datamodule)``, the data set up for fit."""
    from hydra.utils import instantiate

    from sonotok.training.train import build_module, compose_config

    cfg = compose_config(overrides)
    module = build_module(cfg)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return cfg, module, dm


def endless_batches(dm):
    """Training batches of datamodule ``dm``, epoch after epoch, for plain training loops."""
    while True:
        yield from dm.train_dataloader()


def train_step(module, codec, opt, sched, batch) -> tuple[dict, torch.Tensor]:
    """One plain optimizer step of ``module``'s generator objective on ``batch``.

    Returns:
        The loss dict (reconstruction losses and the codec's own) and the weighted total.
    """
    wav = module._batch_audio(batch)
    out = codec(wav)  # a semantic module's hook adds sem/distill
    losses = module.reconstruction_losses(out["recon"], wav)
    losses.update(out["losses"])
    total = module.weighted_total(losses)
    opt.zero_grad(set_to_none=True)
    total.backward()
    if module.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(codec.parameters(), module.grad_clip)
    opt.step()
    sched.step()
    return losses, total
