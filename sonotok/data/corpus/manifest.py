"""The corpus manifest: reading it, per-split statistics (``sonotok corpus stats``), the plot of duration per
speaker, and the held-out utterances with transcripts (for the semantic benchmarks).

A row: ``path`` (relative to the manifest's folder), ``duration`` (s), ``sample_rate``, ``bandwidth``
(``"wideband"``: recorded at 16 kHz or more, written at 16 kHz; ``"narrowband"``: 8 kHz telephone sources,
written at 8 kHz), ``speaker``, ``language``, ``split``, ``source``, ``licence``, ``text`` (transcript or
``null``), ``synthetic`` (generated speech) and ``origin`` (the source files it was cut or joined from).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from sonotok.data.atomic import atomic_path
from sonotok.data.corpus.sources import CorpusError
from sonotok.data.sources import read_jsonl
from sonotok.errors import AudioError

SPLITS = ("train", "valid", "test")
FIELDS = ("path", "duration", "sample_rate", "bandwidth", "speaker", "language", "split", "source", "licence",
          "text", "synthetic", "origin")

__all__ = [
    "FIELDS",
    "SPLITS",
    "corpus_summary",
    "format_summary",
    "plot_speaker_durations",
    "read_manifest",
    "transcribed_utterances",
]


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL manifest (one object per line; blank lines ignored).

    Raises:
        CorpusError: naming the file and line that is not a JSON object.
    """
    try:
        return read_jsonl(path)
    except AudioError as e:
        raise CorpusError(str(e)) from None


def _split_order(name: str) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)


def corpus_summary(rows: Sequence[dict]) -> dict:
    """Seconds and utterance counts per split, per speaker (with its split), per language, and per split the
    speakers, languages, bandwidths, licences and transcribed seconds."""
    out: dict = {"splits": {}, "speakers": {}, "languages": {}, "total_seconds": 0.0}
    detail: dict = defaultdict(lambda: {"speakers": set(), "languages": set(), "bandwidth": defaultdict(float),
                                        "licences": defaultdict(float), "text_seconds": 0.0,
                                        "synthetic_seconds": 0.0})
    for r in rows:
        d = float(r["duration"])
        split = r.get("split", "?")
        out["total_seconds"] += d
        for key, name in (("splits", split), ("speakers", r["speaker"]), ("languages", r["language"])):
            e = out[key].setdefault(name, {"seconds": 0.0, "utterances": 0})
            e["seconds"] += d
            e["utterances"] += 1
            if key == "speakers" and split not in e.setdefault("split", split).split("+"):
                e["split"] = "+".join(sorted(e["split"].split("+") + [split], key=_split_order))
        x = detail[split]
        x["speakers"].add(r["speaker"])
        x["languages"].add(r["language"])
        x["bandwidth"][r.get("bandwidth") or "?"] += d
        x["licences"][r.get("licence") or "?"] += d
        x["text_seconds"] += d if r.get("text") else 0.0
        x["synthetic_seconds"] += d if r.get("synthetic") else 0.0
    for split, x in detail.items():
        e = out["splits"][split]
        e["speakers"] = len(x["speakers"])
        e["languages"] = sorted(x["languages"])
        e["bandwidth_seconds"] = dict(sorted(x["bandwidth"].items()))
        e["licence_seconds"] = dict(sorted(x["licences"].items()))
        e["text_seconds"] = x["text_seconds"]
        e["synthetic_seconds"] = x["synthetic_seconds"]
    return out


def format_summary(summary: dict, speakers: bool = True) -> str:
    """Human-readable table of :func:`corpus_summary`."""
    lines = [f"total {summary['total_seconds'] / 3600:.3f} h"]
    lines.append("splits:")
    for name, e in sorted(summary["splits"].items(), key=lambda kv: _split_order(kv[0])):
        lines.append(f"  {name:<22} {e['seconds'] / 3600:7.3f} h  {e['seconds'] / 60:7.1f} min  {e['utterances']:6d} utt"
                     + (f"  {e['speakers']} speakers, {len(e['languages'])} languages" if "speakers" in e else ""))
        if "languages" in e:
            bw = ", ".join(f"{k} {v / 3600:.2f} h" for k, v in e["bandwidth_seconds"].items())
            lines.append(f"      languages: {' '.join(e['languages'])}")
            lines.append(f"      bandwidth: {bw}; with transcript {e['text_seconds'] / 3600:.2f} h"
                         + (f"; synthetic {e['synthetic_seconds'] / 3600:.2f} h" if e["synthetic_seconds"] else ""))
            lines.append("      licences: " + "; ".join(f"{k} {v / 3600:.2f} h" for k, v in e["licence_seconds"].items()))
    keys = ("speakers", "languages") if speakers else ("languages",)
    for key in keys:
        lines.append(f"{key}:")
        for name, e in sorted(summary[key].items()):
            extra = f"  [{e['split']}]" if key == "speakers" else ""
            lines.append(f"  {name:<22} {e['seconds'] / 3600:7.3f} h  {e['seconds'] / 60:7.1f} min  {e['utterances']:6d} utt{extra}")
    return "\n".join(lines)


def plot_speaker_durations(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write a PNG bar chart of minutes per speaker, coloured by split (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        per[(r.get("split", "?"), r["speaker"])] += float(r["duration"]) / 60
    items = sorted(per.items(), key=lambda kv: (_split_order(kv[0][0]), -kv[1]))
    colors = {"train": "tab:blue", "valid": "tab:orange", "test": "tab:green"}
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(items)), 4.5))
    ax.bar(range(len(items)), [v for _, v in items], color=[colors.get(s, "grey") for (s, _), _ in items])
    ax.set_xticks(range(len(items)), [spk for (_, spk), _ in items], rotation=90, fontsize=6)
    ax.set_ylabel("minutes")
    ax.set_yscale("log")
    ax.set_title("corpus: minutes of speech per speaker (blue train, orange valid, green test)")
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out


def transcribed_utterances(
    corpus: str | os.PathLike, splits: Sequence[str] = ("valid", "test"), languages: Sequence[str] | None = None,
    bandwidth: str | None = "wideband", include_synthetic: bool = False,
) -> list[dict]:
    """Held-out utterances that have a transcript, for WER / phone probes in the semantic benchmarks.

    Args:
        corpus: corpus folder (with ``manifest.jsonl``) or a manifest.
        splits: which splits (default: the held-out ones).
        languages: keep only these languages (``None``: all).
        bandwidth: keep only this bandwidth (``None``: all).

    Returns:
        rows with an absolute ``path`` and a non-empty ``text``, in manifest order.

    Raises:
        CorpusError: the manifest is missing.
    """
    p = Path(corpus)
    manifest = p / "manifest.jsonl" if p.is_dir() else p
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: no corpus manifest (build it with: sonotok corpus build --out {p})")
    out = []
    for r in read_manifest(manifest):
        if not r.get("text") or r.get("split") not in splits:
            continue
        if languages is not None and r.get("language") not in languages:
            continue
        if bandwidth is not None and r.get("bandwidth", "wideband") != bandwidth:
            continue
        if r.get("synthetic") and not include_synthetic:
            continue
        r = dict(r)
        r["path"] = str((manifest.parent / r["path"]).resolve())
        out.append(r)
    return out
