"""Separation evaluation: SI-SNRi and SDRi of a separator against STFT-mask oracles on the same mixtures.

Oracles (Luo & Mesgarani 2019, table I; Wang et al. 2014 "On training targets for supervised speech
separation"), computed from the true sources on an STFT of the mixture (32 ms Hann window, 8 ms hop,
as in the paper) and inverted with the mixture phase:

* ``ibm``: ideal binary mask, 1 for the source with the largest magnitude in each bin;
* ``irm``: ideal ratio mask ``|S_i| / sum_j |S_j|``;
* ``wiener``: Wiener-like mask ``|S_i|^2 / sum_j |S_j|^2``.

When the mixtures contain noise, the noise counts as one more "source" in the mask denominators.
SI-SNR (PIT) and SDR are torchmetrics' (``scale_invariant_signal_noise_ratio``,
``permutation_invariant_training``, ``signal_distortion_ratio``); SDR is taken on the PIT-reordered
estimate. Improvements are relative to the unprocessed mixture.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import Tensor
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio, signal_distortion_ratio

from sonotok.evaluation.report import mean_finite
from sonotok.losses.separation import pit_sisnr, reorder

ORACLES = ("ibm", "irm", "wiener")


def oracle_masks(mix: Tensor, sources: Tensor, noise: Optional[Tensor] = None, sample_rate: int = 8000,
                 kinds: Iterable[str] = ORACLES, window_ms: float = 32.0, hop_ms: float = 8.0) -> Dict[str, Tensor]:
    """Separate ``mix [B, 1, T]`` with ideal masks built from ``sources [B, S, T]`` (+ ``noise [B, 1, T]``).

    Returns ``{kind: estimates [B, S, T]}``.
    """
    n_fft = int(round(window_ms * sample_rate / 1000))
    hop = int(round(hop_ms * sample_rate / 1000))
    win = torch.hann_window(n_fft, device=mix.device, dtype=mix.dtype)
    b, s, t = sources.shape

    def stft(x: Tensor) -> Tensor:
        return torch.stft(x.reshape(-1, t), n_fft, hop, window=win, return_complex=True)

    mix_spec = stft(mix).unsqueeze(1)  # [B, 1, F, N]
    mags = stft(sources).abs().view(b, s, *mix_spec.shape[-2:])
    comp = mags
    if noise is not None and bool(noise.abs().sum() > 0):
        comp = torch.cat([mags, stft(noise).abs().view(b, 1, *mix_spec.shape[-2:])], 1)
    out: Dict[str, Tensor] = {}
    for kind in kinds:
        if kind == "ibm":
            mask = (comp.argmax(1, keepdim=True) == torch.arange(comp.shape[1], device=mix.device).view(1, -1, 1, 1))
            mask = mask[:, :s].to(mix.dtype)
        elif kind == "irm":
            mask = mags / comp.sum(1, keepdim=True).clamp_min(1e-8)
        elif kind == "wiener":
            mask = mags.pow(2) / comp.pow(2).sum(1, keepdim=True).clamp_min(1e-8)
        else:
            raise ValueError(f"unknown oracle {kind!r}: expected one of {ORACLES}")
        est = torch.istft((mask * mix_spec).reshape(b * s, *mix_spec.shape[-2:]), n_fft, hop, window=win, length=t)
        out[kind] = est.view(b, s, t)
    return out


def _sdr(est: Tensor, ref: Tensor) -> Tensor:
    """Mean SDR over sources ``[B]``; a tiny diagonal load keeps the 512-tap distortion filter solvable
    for band-limited references (NaN if it still fails)."""
    # Solved single-threaded: oneMKL's batched LU fails ("DLASWP parameter 6") once
    # torch.set_num_threads has gone 1 -> 2 in a process (e.g. tests, then training); 1 thread is unaffected.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return signal_distortion_ratio(est.double(), ref.double(), load_diag=1e-10).mean(-1).float()
    except RuntimeError:
        return torch.full(est.shape[:1], float("nan"))
    finally:
        torch.set_num_threads(threads)


def separation_scores(est: Tensor, sources: Tensor, mix: Tensor) -> Dict[str, Tensor]:
    """Per-example ``sisnr``, ``sisnri``, ``sdr``, ``sdri`` (dB, ``[B]``) of ``est [B, S, T]``."""
    best, perm = pit_sisnr(est, sources)
    mixr = mix.expand_as(sources)
    base = scale_invariant_signal_noise_ratio(mixr, sources).mean(-1)
    est_r = reorder(est, perm)
    sdr = _sdr(est_r, sources)
    sdr_mix = _sdr(mixr, sources)
    return {"sisnr": best, "sisnri": best - base, "sdr": sdr, "sdri": sdr - sdr_mix, "mix_sisnr": base}


@torch.no_grad()
def evaluate_separation(model: Optional[torch.nn.Module], mixtures: Any, max_items: Optional[int] = None,
                        oracles: Iterable[str] = ORACLES, device: str = "cpu", sample_rate: Optional[int] = None,
                        out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate a separator and the oracle masks on the same mixtures.

    Args:
        model: a separator (``forward(mix [B, 1, T]) -> [B, S, T]``) or ``None`` for oracles only.
        mixtures: a dataset of ``{"mix", "sources", "noise"}`` items (:mod:`sonotok.data.mixtures`).
        max_items: evaluate at most this many mixtures.
        oracles: which oracle masks to compute.
        device: where the model runs.
        sample_rate: the mixtures' rate (default: the model's, else 8000).
        out_dir: if given, ``separation_metrics.json`` is written there.

    Returns:
        ``{"num_mixtures", "seconds", "mixture": {"sisnr", "sdr"}, "<system>": {"sisnri", "sdri", "sisnr", "sdr"}}``
        where systems are ``model`` and the oracles.
    """
    sr = int(sample_rate or getattr(model, "sample_rate", 8000))
    n = len(mixtures) if max_items is None else min(len(mixtures), int(max_items))
    if n == 0:
        raise ValueError("no mixtures to evaluate")
    systems = (["model"] if model is not None else []) + list(oracles)
    acc: Dict[str, Dict[str, List[float]]] = {k: {"sisnri": [], "sdri": [], "sisnr": [], "sdr": []} for k in systems}
    mix_acc: Dict[str, List[float]] = {"sisnr": [], "sdr": []}
    seconds = 0.0
    t0 = time.perf_counter()
    model_time = 0.0
    if model is not None:
        model = model.to(device).eval()
    for i in range(n):
        item = mixtures[i]
        mix, src, noise = item["mix"][None], item["sources"][None], item.get("noise")
        noise = None if noise is None else noise[None]
        seconds += mix.shape[-1] / sr
        ests: Dict[str, Tensor] = {}
        if model is not None:
            t1 = time.perf_counter()
            ests["model"] = model(mix.to(device)).float().cpu()
            model_time += time.perf_counter() - t1
        if oracles:
            ests.update(oracle_masks(mix, src, noise, sr, kinds=oracles))
        for k, est in ests.items():
            sc = separation_scores(est, src, mix)
            for m in ("sisnri", "sdri", "sisnr", "sdr"):
                acc[k][m].append(float(sc[m].mean()))
        mix_acc["sisnr"].append(float(sc["mix_sisnr"].mean()))
        mix_acc["sdr"].append(float((sc["sdr"] - sc["sdri"]).mean()))
    result: Dict[str, Any] = {"num_mixtures": n, "seconds": round(seconds, 2), "sample_rate": sr,
                              "mixture": {k: mean_finite(v) for k, v in mix_acc.items()}}
    for k in systems:
        result[k] = {m: mean_finite(v) for m, v in acc[k].items()}
    if model is not None:
        result["model"]["real_time_factor"] = seconds / max(model_time, 1e-9)
        result["model"]["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    result["eval_seconds"] = round(time.perf_counter() - t0, 2)
    if out_dir is not None:
        p = Path(out_dir)
        p.mkdir(parents=True, exist_ok=True)
        (p / "separation_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_separation_table(result: Dict[str, Any]) -> str:
    """A markdown table: one row per system (model, oracles) with SI-SNRi / SDRi (dB)."""
    lines = [f"{result['num_mixtures']} mixtures, {result['seconds']:.1f} s at {result['sample_rate']} Hz; "
             f"mixture SI-SNR {result['mixture']['sisnr']:.2f} dB, SDR {result['mixture']['sdr']:.2f} dB", "",
             "| system | SI-SNRi (dB) | SDRi (dB) | SI-SNR (dB) | SDR (dB) |", "|---|---:|---:|---:|---:|"]
    for k in ["model", *ORACLES]:
        if k in result:
            r = result[k]
            lines.append(f"| {k} | {r['sisnri']:.2f} | {r['sdri']:.2f} | {r['sisnr']:.2f} | {r['sdr']:.2f} |")
    return "\n".join(lines)
