"""Which files a tokenization run works on: files, recursive folders and JSONL manifests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import soundfile as sf

from sonotok.data.audio import AUDIO_EXTENSIONS
from sonotok.tokenizer.formats import (
    CODE_EXTENSIONS,  # noqa: F401
    )

INPUT_EXTENSIONS = tuple(sorted(set(AUDIO_EXTENSIONS) | {"." + f.lower() for f in sf.available_formats()}
                                - {".raw", ".mat4", ".mat5"}))


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class Item:
    """One input: the source path and its relative name (mirrored under the output folder)."""

    source: str
    rel: str
    error: Optional[str] = None


def _scan_folder(root: Path, exts: Sequence[str]) -> List[Item]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in exts:
                p = Path(dirpath) / name
                out.append(Item(str(p), p.relative_to(root).as_posix()))
    return out


def _read_jsonl_manifest(path: Path) -> List[Item]:
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
                rel = row["path"] if isinstance(row, dict) else None
                if not isinstance(rel, str):
                    raise KeyError("path")
            except (json.JSONDecodeError, KeyError) as e:
                out.append(Item(f"{path}:{i}", f"{path.name}:{i}", f"bad manifest line {i} ({type(e).__name__}: {e})"))
                continue
            p = Path(rel)
            src = p if p.is_absolute() else path.parent / p
            out.append(Item(str(src), p.as_posix().lstrip("/") if not p.is_absolute() else p.name))
    return out


def collect_inputs(inputs: Sequence[str | os.PathLike], extensions: Sequence[str] = INPUT_EXTENSIONS) -> List[Item]:
    """Expand files, folders (recursive) and ``.jsonl`` manifests (``path`` relative to the manifest) into
    :class:`Item` s. A missing input becomes an item with an error (reported, the run goes on)."""
    items: List[Item] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            items += _scan_folder(p, extensions)
        elif p.suffix.lower() == ".jsonl" and p.is_file():
            items += _read_jsonl_manifest(p)
        elif p.exists() or p.is_symlink():
            items.append(Item(str(p), p.name))
        else:
            items.append(Item(str(p), p.name, "file not found"))
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
