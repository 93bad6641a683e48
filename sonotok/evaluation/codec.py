"""Evaluate a codec on a set of audio files: quality, bitrate, codebook usage and speed.

``evaluate(codec, "data/test.jsonl", out_dir="eval/")`` encodes and decodes every file, scores the
reconstruction against the input (PESQ-WB, STOI, SI-SDR, mel distance), accumulates codebook histograms,
times encode and decode, prints an aligned table and writes ``metrics.json``, ``spectrograms.png`` and
``codebook_usage.png`` (and optionally the reconstructed wavs) to ``out_dir``.

``metrics.json`` (and the returned dict) has this layout (NaN is written as ``null``)::

    {
      "model":   {"sample_rate", "hop_length", "frame_rate", "num_codebooks", "codebook_size",
                  "bitrate_kbps", "tokens_per_second"},
      "summary": {"num_files", "total_seconds", "pesq_wb", "stoi", "si_sdr", "mel_distance",
                  "bitrate_kbps", "nominal_bitrate_kbps", "entropy_bitrate_kbps", "tokens_per_second", "frame_rate",
                  "rtf_encode", "rtf_decode", "mean_utilization", "mean_perplexity"},
      "codebooks": [{"index", "utilization", "perplexity", "entropy_bits"}, ...],   # one per codebook
      "files":   [{"path", "duration", "pesq_wb", "stoi", "si_sdr", "mel_distance",
                   "rtf_encode", "rtf_decode", ...other manifest fields (speaker, ...)}, ...]
    }

Means skip NaN (files where PESQ found no speech). ``bitrate_kbps`` comes from ``codec.bitrate()`` when the
codec has it, ``nominal_bitrate_kbps`` is ``frame_rate * K * log2(codebook_size)``, and
``entropy_bitrate_kbps`` is what an ideal per-codebook entropy coder would need given the observed usage.

Real-time factors are compute seconds per audio second (below 1 is faster than real time).

The tables, JSON and plots are made by :mod:`sonotok.evaluation.report`.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from sonotok.data.atomic import atomic_write_text
from sonotok.data.audio import load_audio, save_audio
from sonotok.data.sources import scan_audio
from sonotok.errors import AudioError
from sonotok.evaluation.report import (
    QUALITY_KEYS,
    SUMMARY_COLUMNS,
    format_comparison,
    format_report,
    format_table,
    jsonable,
    mean_finite,
    plot_codebook_usage,
    plot_spectrograms,
)
from sonotok.metrics.bitrate import bitrate as nominal_bitrate
from sonotok.metrics.bitrate import codec_bitrate, tokens_per_second
from sonotok.metrics.codebook import CodebookUsage
from sonotok.metrics.quality import mel_distance, pesq_wb, si_sdr, stoi

__all__ = [
    "evaluate",
    "find_audio",
    "format_table",
    "format_comparison",
    "format_report",
    "QUALITY_KEYS",
    "SUMMARY_COLUMNS",
    "jsonable",
]


# ----------------------------------------------------------------------------------------------- inputs


def find_audio(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """List the audio items of a JSONL manifest, a folder (recursive), an audio file, or a list of these
    (:func:`sonotok.data.sources.scan_audio`, the scanner every command uses).

    Manifest lines are JSON objects with at least ``path`` (relative to the manifest's folder, or
    absolute); other fields (``duration``, ``speaker``, ...) are kept.

    Returns:
        ``[{"path": path str, ...manifest fields}]`` in a stable order.

    Raises:
        AudioError: a missing source or a bad manifest line (naming the file and line).
    """
    return [dict(e.row, path=e.path) if e.row else {"path": e.path} for e in scan_audio(sources)]


def _load(path: str, sample_rate: int, max_seconds: float | None) -> Tensor:
    """``[1, T]`` float32 mono audio at ``sample_rate`` (the first ``max_seconds`` seconds)."""
    wav = load_audio(path, sample_rate, channels="downmix", duration=max_seconds)
    if max_seconds is not None:
        wav = wav[..., : int(round(max_seconds * sample_rate))]
    if wav.shape[-1] == 0:
        raise AudioError(path, "zero-length audio")
    return wav.float()


# ------------------------------------------------------------------------------------------- evaluate


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    codec: torch.nn.Module,
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    max_files: int | None = None,
    max_seconds: float | None = None,
    num_codebooks: int | None = None,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike | None = None,
    save_wavs: int = 0,
    verbose: bool = True,
    extra_metrics=None,
) -> dict:
    """Encode and decode audio files one at a time and score the reconstructions.

    Args:
        codec: a module with ``sample_rate``, ``hop_length``, ``frame_rate``, ``num_codebooks``,
            ``codebook_size``, ``encode(wav [B,1,T]) -> codes [B,K,T']`` and ``decode(codes) -> wav``
            (output may be longer than the input; it is cropped).
        sources: a JSONL manifest (``path`` relative to its folder), a folder searched recursively, an
            audio file, or a list of these.
        max_files: evaluate at most this many files (the first ones, in manifest/sorted order).
        max_seconds: crop each file to its first ``max_seconds`` seconds.
        num_codebooks: decode from the first ``K`` codebooks only (residual VQ bitrate scaling); passed
            to ``codec.encode(wav, num_codebooks=K)`` when it takes that argument, else the codes are
            truncated. ``None`` uses all of them.
        device: where to run the codec (it is moved there and put in eval mode).
        extra_metrics: optional ``f(ref [T], est [T], sample_rate) -> {key: float}`` scored per file as well
            (e.g. :class:`sonotok.metrics.perceptual.PerceptualMetrics`); its keys join each file's row
            and the summary's means.
        out_dir: when given, write ``metrics.json``, ``spectrograms.png``, ``codebook_usage.png`` there.
        save_wavs: also write the first ``save_wavs`` reconstructions to ``out_dir/wavs/``.
        verbose: print the report table.

    Returns:
        the metrics dict described in this module's docstring (the same content as ``metrics.json``,
        with NaN instead of ``null``).
    """
    items = find_audio(sources)
    if max_files is not None:
        items = items[: int(max_files)]
    if not items:
        raise AudioError(str(sources), "no audio files found")
    device = torch.device(device)
    codec = codec.to(device).eval()
    sr = int(codec.sample_rate)
    total_k = int(codec.num_codebooks)
    k = total_k if num_codebooks is None else int(num_codebooks)
    if not 1 <= k <= total_k:
        raise ValueError(f"num_codebooks must be in [1, {total_k}], got {num_codebooks}")
    codebook_size = int(codec.codebook_size)
    frame_rate = float(codec.frame_rate)
    usage = CodebookUsage(k, codebook_size)
    # codecs whose encode() takes num_codebooks (e.g. grouped RVQ) choose the subset themselves
    pass_k = k < total_k and _accepts(codec.encode, "num_codebooks")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    files: list[dict] = []
    plot_pairs: list[tuple[str, Tensor, Tensor]] = []
    total_seconds = enc_seconds = dec_seconds = 0.0
    with torch.inference_mode():
        for i, item in enumerate(items):
            wav = _load(item["path"], sr, max_seconds)  # [1, T]
            x = wav.unsqueeze(0).to(device)  # [1, 1, T]
            _sync(device)
            t0 = time.perf_counter()
            codes = codec.encode(x, num_codebooks=k) if pass_k else codec.encode(x)
            _sync(device)
            t1 = time.perf_counter()
            if codes.dim() != 3 or codes.shape[0] != 1 or codes.shape[1] < k:
                raise ValueError(
                    f"codec.encode must return codes [B=1, K>={k}, T'], got {tuple(codes.shape)} for {item['path']}"
                )
            codes = codes[:, :k]
            y = codec.decode(codes)
            _sync(device)
            t2 = time.perf_counter()
            if y.dim() == 2:
                y = y.unsqueeze(1)
            if y.shape[-1] < x.shape[-1]:
                raise ValueError(
                    f"codec.decode returned {y.shape[-1]} samples for {x.shape[-1]} input samples ({item['path']})"
                )
            y = y[..., : x.shape[-1]].float().cpu()
            ref = x.float().cpu()
            usage.update(codes.cpu())
            seconds = ref.shape[-1] / sr
            total_seconds += seconds
            enc_seconds += t1 - t0
            dec_seconds += t2 - t1
            row = {
                **{kk: vv for kk, vv in item.items() if kk != "path"},
                "path": item["path"],
                "duration": seconds,
                "pesq_wb": float(pesq_wb(ref[0, 0], y[0, 0], sr)),
                "stoi": float(stoi(ref[0, 0], y[0, 0], sr)),
                "si_sdr": float(si_sdr(ref[0, 0], y[0, 0])),
                "mel_distance": float(mel_distance(ref[0, 0], y[0, 0], sr)),
                **(extra_metrics(ref[0, 0], y[0, 0], sr) if extra_metrics is not None else {}),
                "rtf_encode": (t1 - t0) / seconds,
                "rtf_decode": (t2 - t1) / seconds,
            }
            files.append(row)
            if len(plot_pairs) < 2:
                plot_pairs.append((item["path"], ref[0, 0], y[0, 0]))
            if out is not None and i < save_wavs:
                save_audio(out / "wavs" / f"{i:04d}_{Path(item['path']).stem}.wav", y[0], sr)

    # torchmetrics squeezes one-element results to 0-dim: keep [K]
    stats = {name: value.reshape(-1) for name, value in usage.compute().items()}
    bps = codec_bitrate(codec, k)
    model = {
        "sample_rate": sr,
        "hop_length": int(codec.hop_length),
        "frame_rate": frame_rate,
        "num_codebooks": k,
        "codebook_size": codebook_size,
        "bitrate_kbps": bps / 1000,
        "tokens_per_second": tokens_per_second(frame_rate, k),
    }
    summary = {
        "num_files": len(files),
        "total_seconds": total_seconds,
        **{key: mean_finite(f[key] for f in files) for key in QUALITY_KEYS},
        **{key: mean_finite(f[key] for f in files)
           for key in (extra_metrics.keys() if hasattr(extra_metrics, "keys") else ())},
        "bitrate_kbps": bps / 1000,
        "nominal_bitrate_kbps": nominal_bitrate(frame_rate, k, codebook_size) / 1000,
        "entropy_bitrate_kbps": usage.entropy_bitrate(frame_rate) / 1000,
        "tokens_per_second": tokens_per_second(frame_rate, k),
        "frame_rate": frame_rate,
        "rtf_encode": enc_seconds / total_seconds,
        "rtf_decode": dec_seconds / total_seconds,
        "mean_utilization": float(stats["utilization"].mean()),
        "mean_perplexity": float(stats["perplexity"].mean()),
    }
    codebooks = [
        {
            "index": j,
            "utilization": float(stats["utilization"][j]),
            "perplexity": float(stats["perplexity"][j]),
            "entropy_bits": float(stats["entropy_bits"][j]),
        }
        for j in range(k)
    ]
    result = {"model": model, "summary": summary, "codebooks": codebooks, "files": files}

    if out is not None:
        atomic_write_text(out / "metrics.json", json.dumps(jsonable(result), indent=2, allow_nan=False))
        plot_spectrograms(plot_pairs, sr, out / "spectrograms.png")
        plot_codebook_usage(usage.counts.cpu(), stats, out / "codebook_usage.png")
    if verbose:
        print(format_report(result))
    return result
