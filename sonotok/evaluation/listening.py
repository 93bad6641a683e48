"""A static listening page: per file, the original, each system's reconstruction, spectrograms and metrics.

``sonotok eval --html DIR`` writes ``DIR/index.html`` with ``audio/`` (16-bit WAVs, playable in any browser)
and ``img/`` (one log-magnitude spectrogram PNG per clip). Systems are sonotok models (encode + decode, as
:func:`sonotok.evaluation.codec.evaluate` does) and classic codecs (:mod:`sonotok.evaluation.classic`,
delay-compensated); every clip is scored with the same metric functions. The page has no scripts or
external resources, so it opens from the file system or any static web server.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch

from sonotok.data.atomic import atomic_path, atomic_write_text
from sonotok.data.audio import load_audio, save_audio

METRIC_LABELS = (("pesq_wb", "PESQ-WB", "{:.2f}"), ("stoi", "STOI", "{:.3f}"), ("si_sdr", "SI-SDR", "{:.1f}"),
                 ("mel_distance", "mel dist", "{:.3f}"))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower() or "x"


def _spectrogram_png(wav: np.ndarray, sample_rate: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    n_fft = 512 if sample_rate <= 16000 else 1024
    spec = torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-5))
    fig, ax = plt.subplots(figsize=(5.0, 1.8), dpi=80)
    ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80, vmax=float(db.max()),
              extent=(0, len(wav) / sample_rate, 0, sample_rate / 2000), cmap="magma")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _score(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> Dict[str, float]:
    from sonotok.metrics.quality import mel_distance, pesq_wb, si_sdr, stoi

    r, e = torch.from_numpy(ref), torch.from_numpy(est)
    return {"pesq_wb": float(pesq_wb(r, e, sample_rate)), "stoi": float(stoi(r, e, sample_rate)),
            "si_sdr": float(si_sdr(r, e)), "mel_distance": float(mel_distance(r, e, sample_rate))}


@torch.inference_mode()
def _reconstruct(codec, wav: np.ndarray, num_codebooks: int | None) -> np.ndarray:
    x = torch.from_numpy(wav)[None, None]
    dev = next(iter(codec.parameters())).device
    codes = codec.encode(x.to(dev))
    if num_codebooks is not None:
        codes = codes[:, :num_codebooks]
    y = codec.decode(codes)
    return y[0, 0, : x.shape[-1]].float().cpu().numpy()


def write_listening_page(out_dir: str | Path, files: Sequence[str | Path], models: Mapping[str, object],
                         classic: Sequence[str] = (), sample_rate: int | None = None,
                         max_seconds: float | None = 10.0, num_codebooks: int | None = None) -> Path:
    """Reconstruct ``files`` with every system and write the page.

    Args:
        out_dir: the page's folder (``index.html``, ``audio/``, ``img/``, ``metrics.json``).
        files: audio files (any rate / channels: read mono at the models' rate).
        models: ``{name: codec}`` sonotok models (all at one sample rate).
        classic: classic-codec specs (``"opus:6"``, ``"codec2:3200"``).
        sample_rate: the page's rate (default: the first model's, else 16000).
        max_seconds: crop each file to this many seconds (``None``: whole files).

    Returns:
        the path of ``index.html``.
    """
    from sonotok.evaluation.classic import align, parse_classic

    out = Path(out_dir)
    rates = {int(m.sample_rate) for m in models.values()}
    if len(rates) > 1:
        raise ValueError(f"models at different sample rates {sorted(rates)}: make one page per rate")
    sr = int(sample_rate or (rates.pop() if rates else 16000))
    systems: List[str] = ["original", *models, *(parse_classic(s).name for s in classic)]
    baselines = [parse_classic(s) for s in classic]
    rows: List[Dict] = []
    for i, f in enumerate(files):
        wav = load_audio(f, sr, channels="downmix")[0]
        if max_seconds is not None:
            wav = wav[: int(max_seconds * sr)]
        ref = wav.numpy().astype(np.float32)
        clips: Dict[str, np.ndarray] = {"original": ref}
        for name, codec in models.items():
            clips[name] = _reconstruct(codec, ref, num_codebooks)
        for c in baselines:
            y, _ = c.roundtrip(ref, sr)
            clips[c.name] = align(ref, y.astype(np.float32), int(0.1 * sr))
        entry = {"file": str(f), "duration": len(ref) / sr, "systems": {}}
        for name in systems:
            stem = f"{i:03d}_{_slug(name)}"
            save_audio(out / "audio" / f"{stem}.wav", torch.from_numpy(clips[name])[None], sr)
            _spectrogram_png(clips[name], sr, out / "img" / f"{stem}.png", name)
            entry["systems"][name] = {"audio": f"audio/{stem}.wav", "image": f"img/{stem}.png",
                                      "metrics": None if name == "original" else _score(ref, clips[name], sr)}
        rows.append(entry)
    atomic_write_text(out / "metrics.json", json.dumps({"sample_rate": sr, "systems": systems, "files": rows},
                                                        indent=2) + "\n")
    page = out / "index.html"
    atomic_write_text(page, render_html(rows, systems, sr))
    return page


def _mean_table(rows: Sequence[Dict], systems: Sequence[str]) -> str:
    head = "".join(f"<th>{label}</th>" for _, label, _ in METRIC_LABELS)
    body = []
    for name in systems[1:]:
        cells = []
        for key, _, fmt in METRIC_LABELS:
            vals = [r["systems"][name]["metrics"][key] for r in rows]
            cells.append(f"<td>{fmt.format(float(np.mean(vals)))}</td>")
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return f"<table class='mean'><tr><th>system (mean of {len(rows)} files)</th>{head}</tr>{''.join(body)}</table>"


def _clip_cell(name: str, s: Dict) -> str:
    metrics = ""
    if s["metrics"]:
        metrics = "<br>".join(f"{label} {fmt.format(s['metrics'][key])}" for key, label, fmt in METRIC_LABELS)
    return (f"<td class='clip'><b>{html.escape(name)}</b><br>"
            f"<audio controls preload='metadata' src='{s['audio']}'></audio>"
            f"<img alt='spectrogram of {html.escape(name)}' src='{s['image']}'>{metrics}</td>")


def render_html(rows: Sequence[Dict], systems: Sequence[str], sample_rate: int) -> str:
    """The page for ``rows`` (as in ``metrics.json``); relative links only."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sonotok listening page</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}"
        ".clip img{display:block;width:400px}audio{width:400px}</style></head><body>",
        f"<h1>Listening page</h1><p>{len(rows)} files at {sample_rate} Hz. Reconstructions by each system; "
        "classic codecs are delay-compensated. Metrics against the original.</p>",
        _mean_table(rows, systems),
    ]
    for i, r in enumerate(rows):
        parts.append(f"<h2 id='f{i}'>{html.escape(Path(r['file']).name)} ({r['duration']:.1f} s)</h2>"
                     f"<p class='path'>{html.escape(r['file'])}</p><table>")
        groups = [systems[:1]] + [list(systems[j:j + 3]) for j in range(1, len(systems), 3)]
        for group in groups:  # the original alone, then the systems three per row
            parts.append("<tr>" + "".join(_clip_cell(name, r["systems"][name]) for name in group) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
