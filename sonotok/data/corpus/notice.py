"""``NOTICE.txt``: the credits and licences of every corpus source (written next to the built corpus; the
repository's own ``NOTICE.txt`` is :func:`notice_text` over all sources)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sonotok.data.atomic import atomic_write_text
from sonotok.data.corpus.sources import Source

__all__ = ["notice_text", "write_notice"]

HEADER = """\
Speech corpus built by `sonotok corpus build` from Debian packages on your machine. The audio is not part of
the sonotok repository and must not be committed to it. Each utterance keeps the licence of its source
(field `licence` in manifest.jsonl); redistributing the audio or a model trained on it means honouring
these licences, including the share-alike and credit clauses below.

Changes made by sonotok to every recording: decoded, down-mixed to mono, resampled (16 kHz, or 8 kHz for
8 kHz sources), leading/trailing silence trimmed, cut at pauses or joined with short silences, loudness
normalised to -23 LUFS, written as 16-bit wav.
"""

VISIBLE_CREDIT = """\
VISIBLE CREDIT REQUIRED (asterisk-it-menardi, CC-BY-SA-3.0-IT): applications that distribute these sounds or
models trained on them must show end users that the Italian prompts were made by Marco Menardi and Paola Dal
Zot, with the address http://www.voip.ammdomus.it where they can be obtained.
"""


def notice_text(sources: Sequence[Source], summary: dict | None = None) -> str:
    """The notice for these sources; with a build summary, the hours per licence too."""
    lines = [HEADER]
    if any(s.name == "asterisk-it-menardi" for s in sources):
        lines.append(VISIBLE_CREDIT)
    lines.append("Sources:\n")
    for s in sources:
        pk = ", ".join(s.packages) if s.packages else "asterisk-core-sounds-{en,es,fr,it,ru}-g722 (+ their text packages)"
        if s.synthetic:
            pk = "generated locally (synthetic voices, opt-in)"
        lines.append(f"* {s.name}: {s.description}\n  Debian: {pk}\n  Licence: {s.licence}\n  Credit: {s.credit}\n")
    if summary:
        for split, e in summary.get("splits", {}).items():
            lic = "; ".join(f"{k}: {v / 3600:.2f} h" for k, v in e.get("licence_seconds", {}).items())
            lines.append(f"{split}: {lic}")
    return "\n".join(lines).rstrip() + "\n"


def write_notice(path: str | os.PathLike, sources: Sequence[Source], summary: dict | None = None) -> Path:
    """Write :func:`notice_text` atomically (unchanged files are not rewritten)."""
    p = Path(path)
    text = notice_text(sources, summary)
    if p.exists() and p.read_text(encoding="utf-8") == text:
        return p
    return atomic_write_text(p, text)
