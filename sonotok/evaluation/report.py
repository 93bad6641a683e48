"""Reports of an evaluation: aligned text tables, the side-by-side comparison, strict JSON and plots.

The scoring loop is :mod:`sonotok.evaluation.codec`; this module only formats what it returns (and the
separation evaluation shares :func:`mean_finite`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sonotok.metrics.mel import log_mel

__all__ = [
    "QUALITY_KEYS",
    "SUMMARY_COLUMNS",
    "format_comparison",
    "format_report",
    "format_table",
    "jsonable",
    "mean_finite",
    "plot_codebook_usage",
    "plot_spectrograms",
]

QUALITY_KEYS = ("pesq_wb", "stoi", "si_sdr", "mel_distance")
SUMMARY_COLUMNS = (
    "pesq_wb",
    "stoi",
    "si_sdr",
    "mel_distance",
    "bitrate_kbps",
    "entropy_bitrate_kbps",
    "tokens_per_second",
    "frame_rate",
    "rtf_encode",
    "rtf_decode",
    "mean_utilization",
    "mean_perplexity",
)


def mean_finite(values: Iterable[float | None]) -> float:
    """Mean of the finite values (``None``, NaN and inf skipped: e.g. files where PESQ found no speech);
    NaN when there is none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


# ------------------------------------------------------------------------------------------- formatting


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-2):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[Mapping], columns: Sequence[str | tuple[str, str]] | None = None) -> str:
    """Plain-text table with aligned columns (text left-aligned, numbers right-aligned).

    Args:
        rows: one mapping per row.
        columns: keys to show, each a key or a ``(key, header)`` pair; ``None`` means every key of the
            rows in first-seen order. Missing values print as ``-``; floats with 3 decimals.

    Returns:
        the table as one string (header, rule, rows), without a trailing newline.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cols = [(c, c) if isinstance(c, str) else (c[0], c[1]) for c in columns]
    cells = [[_fmt(row.get(key)) for key, _ in cols] for row in rows]
    numeric = [
        all(isinstance(row.get(key), (int, float)) or row.get(key) is None for row in rows) and bool(rows)
        for key, _ in cols
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, (_, h) in enumerate(cols)]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line([h for _, h in cols]), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def format_comparison(results: Mapping[str, Mapping], metrics: Sequence[str] | None = None) -> str:
    """Side-by-side table of several models: one row per metric, one column per model.

    Args:
        results: ``{model name: metrics}``, each either a full :func:`evaluate` result (its
            ``"summary"`` is used) or a flat ``{metric: value}`` mapping.
        metrics: metric keys to show (rows); default: the standard summary keys present in any model,
            followed by the other keys in first-seen order.
    """
    flat = {name: dict(r.get("summary", r)) if isinstance(r, Mapping) else {} for name, r in results.items()}
    if metrics is None:
        seen = list(dict.fromkeys(k for r in flat.values() for k in r))
        metrics = [k for k in SUMMARY_COLUMNS if k in seen] + [k for k in seen if k not in SUMMARY_COLUMNS]
    rows = [{"metric": m, **{name: r.get(m) for name, r in flat.items()}} for m in metrics]
    return format_table(rows, ["metric", *flat.keys()])


def format_report(result: Mapping) -> str:
    """The printed report of :func:`evaluate`: per-file table with a mean row, summary, codebooks."""
    # learned metrics (sonotok.metrics.perceptual) when the evaluation scored them
    perceptual = [k for k in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "spk_sim")
                  if result["files"] and k in result["files"][0]]
    file_cols = [("path", "file"), "duration", *QUALITY_KEYS, *perceptual, "rtf_encode", "rtf_decode"]
    paths = [f["path"] for f in result["files"]]
    files = [dict(f, path=_short_path(p)) for f, p in zip(result["files"], _relative_paths(paths))]
    mean_row = {"path": "MEAN", **{k: result["summary"].get(k) for k in (*QUALITY_KEYS, *perceptual)}}
    mean_row["duration"] = result["summary"].get("total_seconds")
    mean_row["rtf_encode"] = result["summary"].get("rtf_encode")
    mean_row["rtf_decode"] = result["summary"].get("rtf_decode")
    summary = [{"metric": k, "value": v} for k, v in result["summary"].items()]
    parts = [
        format_table(files + [mean_row], file_cols),
        "",
        format_table(summary, ["metric", "value"]),
        "",
        format_table(
            result["codebooks"], [("index", "codebook"), "utilization", "perplexity", "entropy_bits"]
        ),
    ]
    return "\n".join(parts)


def _relative_paths(paths: list[str]) -> list[str]:
    """Paths relative to their common folder (for display)."""
    if len(paths) < 2:
        return [Path(p).name for p in paths]
    try:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # different drives
        return list(paths)
    return [os.path.relpath(os.path.abspath(p), root) for p in paths]


def _short_path(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3) :]


def jsonable(obj):
    """NaN/inf -> None, tensors -> Python numbers, for strict JSON."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------------------------- plots


def plot_spectrograms(pairs: list[tuple[str, Tensor, Tensor]], sample_rate: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    """Log-mel spectrograms of (reference, reconstruction) pairs, one row per file, written to ``path``."""
    fig, axes = plt.subplots(len(pairs), 2, figsize=(12, 3.2 * len(pairs)), squeeze=False)
    for row, (name, ref, est) in enumerate(pairs):
        mels = [log_mel(x.reshape(-1).float(), sample_rate) for x in (ref, est)]
        vmin, vmax = float(mels[0].min()), float(mels[0].max())
        duration = ref.shape[-1] / sample_rate
        for col, (mel, title) in enumerate(zip(mels, ("reference", "reconstruction"))):
            ax = axes[row][col]
            im = ax.imshow(
                mel.numpy(),
                origin="lower",
                aspect="auto",
                vmin=vmin,
                vmax=vmax,
                extent=(0, duration, 0, mel.shape[0]),
                cmap="magma",
            )
            ax.set_title(f"{_short_path(Path(name).name, 50)}: {title}", fontsize=9)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("mel bin")
            fig.colorbar(im, ax=ax, label="log mel")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_codebook_usage(counts: Tensor, stats: Mapping[str, Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    """Sorted code frequencies ``counts [K, V]`` per codebook and their utilization, written to ``path``."""
    k, v = counts.shape
    fig, (ax_hist, ax_util) = plt.subplots(
        1, 2, figsize=(13, 0.5 * k + 3), gridspec_kw={"width_ratios": [3, 1]}
    )
    sorted_counts = counts.double().sort(dim=1, descending=True).values
    freq = sorted_counts / sorted_counts.sum(dim=1, keepdim=True).clamp_min(1)
    im = ax_hist.imshow(
        torch.log10(freq + 1e-8).numpy(),
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        vmin=-8,
        vmax=0,
        extent=(0, v, k - 0.5, -0.5),
    )
    ax_hist.set_title("code frequency per codebook (sorted, log10)")
    ax_hist.set_xlabel("code rank")
    ax_hist.set_ylabel("codebook")
    fig.colorbar(im, ax=ax_hist)
    idx = torch.arange(k).numpy()
    ax_util.barh(idx - 0.2, stats["utilization"].numpy(), height=0.4, label="utilization")
    ax_util.barh(idx + 0.2, (stats["perplexity"] / v).numpy(), height=0.4, label="perplexity / size")
    ax_util.set_ylim(k - 0.5, -0.5)
    ticks = list(range(0, k, max(1, k // 16)))
    ax_hist.set_yticks(ticks)
    ax_util.set_yticks(ticks)
    ax_util.set_xlim(0, 1.05)
    ax_util.set_title(f"codebook size {v}")
    ax_util.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
