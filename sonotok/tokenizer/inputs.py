"""Which files a tokenization run works on: files, recursive folders and JSONL manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from sonotok.data.audio import AUDIO_EXTENSIONS
from sonotok.data.sources import list_audio_files, scan_audio
from sonotok.tokenizer.formats import (
    CODE_EXTENSIONS,  # noqa: F401
    )

INPUT_EXTENSIONS = AUDIO_EXTENSIONS  # the one list (sonotok.data.audio)


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class Item:
    """One input: the source path and its relative name (mirrored under the output folder)."""

    source: str
    rel: str
    error: Optional[str] = None


def _scan_folder(root: Path, exts: Sequence[str]) -> List[Item]:
    return [Item(str(f), f.relative_to(root).as_posix()) for f in list_audio_files(root, exts)]


def collect_inputs(inputs: Sequence[str | os.PathLike], extensions: Sequence[str] = INPUT_EXTENSIONS) -> List[Item]:
    """Expand files, folders (recursive) and ``.jsonl`` manifests (``path`` relative to the manifest) into
    :class:`Item` s (:func:`sonotok.data.sources.scan_audio`). A missing input or a bad manifest line becomes
    an item with an error (reported, the run goes on)."""
    items: List[Item] = []
    for inp in inputs:
        items += [Item(e.path, e.rel, e.error) for e in scan_audio(inp, extensions, errors="report")]
    seen: Dict[str, int] = {}
    for it in items:  # identical relative names from different inputs must not overwrite each other
        n = seen.get(it.rel, 0)
        seen[it.rel] = n + 1
        if n:
            stem, ext = os.path.splitext(it.rel)
            it.rel = f"{stem}__{n}{ext}"
    return items


def collect_code_files(inputs: Sequence[str | os.PathLike]) -> List[Item]:
    items: List[Item] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            items += _scan_folder(p, CODE_EXTENSIONS)
        else:
            items.append(Item(str(p), p.name, None if p.exists() else "file not found"))
    return items
