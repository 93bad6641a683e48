"""Helpers shared by the benchmark scripts in ``bench/``."""

from __future__ import annotations

import json
from pathlib import Path


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
