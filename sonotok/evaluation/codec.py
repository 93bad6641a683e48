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
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sonotok.errors import AudioError
from sonotok.metrics.bitrate import bitrate as nominal_bitrate
from sonotok.metrics.bitrate import codec_bitrate, tokens_per_second
from sonotok.metrics.codebook import CodebookUsage
from sonotok.metrics.quality import log_mel, mel_distance, pesq_wb, si_sdr, stoi

__all__ = [
    "evaluate",
    "find_audio",
    "format_table",
    "format_comparison",
    "format_report",
    "QUALITY_KEYS",
    "jsonable",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
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


# ----------------------------------------------------------------------------------------------- inputs


def find_audio(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """List the audio items of a JSONL manifest, a folder (recursive), an audio file, or a list of these.

    Manifest lines are JSON objects with at least ``path`` (relative to the manifest's folder, or
    absolute); other fields (``duration``, ``speaker``, ...) are kept.

    Returns:
        ``[{"path": absolute path str, ...manifest fields}]`` in a stable order.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[dict] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            items.extend({"path": str(f)} for f in files)
        elif p.suffix.lower() in (".jsonl", ".json") and p.is_file():
            with open(p, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise AudioError(p, f"line {lineno}: not JSON ({err.msg})") from None
                    if not isinstance(row, dict) or "path" not in row:
                        raise AudioError(p, f"line {lineno}: manifest rows need a 'path' field")
                    row = dict(row)
                    path = Path(row["path"])
                    row["path"] = str(path if path.is_absolute() else p.parent / path)
                    items.append(row)
        elif p.is_file():
            items.append({"path": str(p)})
        else:
            raise AudioError(p, "no such manifest, folder or audio file")
    return items


def _load(path: str, sample_rate: int, max_seconds: float | None) -> Tensor:
    """``[1, T]`` float32 mono audio at ``sample_rate``."""
    try:
        from sonotok.data.audio import load_audio
    except ImportError:
        load_audio = None
    if load_audio is not None:
        try:
            wav = load_audio(path, sample_rate, channels="downmix", duration=max_seconds)
        except TypeError:  # an older load_audio without ``duration``
            wav = load_audio(path, sample_rate, channels="downmix")
    else:
        import soundfile as sf
        import torchaudio

        try:
            data, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioError(path, f"cannot read audio ({err})") from None
        wav = torch.from_numpy(data.T.copy()).mean(dim=0, keepdim=True)
        if sr != sample_rate:
            wav = torchaudio.functional.resample(wav, sr, sample_rate)
    if max_seconds is not None:
        wav = wav[..., : int(round(max_seconds * sample_rate))]
    if wav.shape[-1] == 0:
        raise AudioError(path, "zero-length audio")
    return wav.float()


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
    file_cols = [("path", "file"), "duration", *QUALITY_KEYS, "rtf_encode", "rtf_decode"]
    paths = [f["path"] for f in result["files"]]
    files = [dict(f, path=_short_path(p)) for f, p in zip(result["files"], _relative_paths(paths))]
    mean_row = {"path": "MEAN", **{k: result["summary"].get(k) for k in QUALITY_KEYS}}
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


def _plot_spectrograms(pairs: list[tuple[str, Tensor, Tensor]], sample_rate: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _plot_codebook_usage(counts: Tensor, stats: Mapping[str, Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# ------------------------------------------------------------------------------------------- evaluate


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


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
                "rtf_encode": (t1 - t0) / seconds,
                "rtf_decode": (t2 - t1) / seconds,
            }
            files.append(row)
            if len(plot_pairs) < 2:
                plot_pairs.append((item["path"], ref[0, 0], y[0, 0]))
            if out is not None and i < save_wavs:
                import soundfile as sf

                (out / "wavs").mkdir(exist_ok=True)
                sf.write(str(out / "wavs" / f"{i:04d}_{Path(item['path']).stem}.wav"), y[0, 0].numpy(), sr)

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
        **{key: _mean(f[key] for f in files) for key in QUALITY_KEYS},
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
        with open(out / "metrics.json", "w", encoding="utf-8") as fh:
            json.dump(jsonable(result), fh, indent=2, allow_nan=False)
        _plot_spectrograms(plot_pairs, sr, out / "spectrograms.png")
        _plot_codebook_usage(usage.counts.cpu(), stats, out / "codebook_usage.png")
    if verbose:
        print(format_report(result))
    return result
