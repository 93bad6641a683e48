"""The one audio-file scanner (files, recursive folders, JSONL manifests) and the one JSONL reader/writer.

Every part of sonotok that takes "audio files, folders or manifests" (training data, ``sonotok tokenize``,
``sonotok eval``, ``sonotok separate``, mixtures, the corpus builder) goes through :func:`scan_audio`, so
the same input gives the same file set everywhere; the extensions are
:data:`sonotok.data.audio.AUDIO_EXTENSIONS`.

A JSONL manifest holds one JSON object per line with at least ``path`` (relative to the manifest's folder,
or absolute); other fields (``duration``, ``speaker``, ``language``, ``split``, ``text``, ...) are kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from sonotok.data.atomic import atomic_path  # re-exported: the one atomic-write helper
from sonotok.data.audio import AUDIO_EXTENSIONS
from sonotok.errors import AudioError

MANIFEST_SUFFIXES = (".jsonl", ".json")

__all__ = [
    "MANIFEST_SUFFIXES",
    "ScanEntry",
    "atomic_path",
    "is_manifest_path",
    "list_audio_files",
    "read_jsonl",
    "scan_audio",
    "write_jsonl",
]


@dataclass
class ScanEntry:
    """One input file found by :func:`scan_audio`.

    Attributes:
        path: the file (absolute when it came from a folder or a manifest).
        rel: its name relative to the folder or manifest it came from (a plain file: its name).
        row: the manifest row (``path`` made absolute), or ``None`` for files and folder members.
        error: why this entry cannot be used (``errors="report"`` only), else ``None``.
    """

    path: str
    rel: str
    row: dict[str, Any] | None = None
    error: str | None = None
    origin: str = field(default="", repr=False)


def is_manifest_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a JSONL manifest (by extension; the file is not opened)."""
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


def list_audio_files(
    folder: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS, recursive: bool = True
) -> list[Path]:
    """Audio files under ``folder`` in a deterministic order (each folder's files, then its subfolders,
    both sorted by name); hidden files (``.name``, e.g. temporary files being written) are skipped and
    symlinked folders followed.
    """
    exts = {e.lower() for e in extensions}
    root = Path(folder)
    out: list[Path] = []
    if not recursive:
        return sorted(
            p
            for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
        )
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in exts:
                continue
            out.append(Path(dirpath) / name)
    return out


def read_jsonl(
    path: str | os.PathLike, require: Sequence[str] = (), skip_bad: bool = False
) -> list[dict[str, Any]]:
    """Read a JSONL file: one JSON object per line, blank lines ignored.

    Args:
        path: the file.
        require: keys every row must have.
        skip_bad: drop lines that are not JSON objects (a torn last line of a killed run) instead of raising.

    Raises:
        AudioError: naming the file and line, for a line that is not a JSON object or lacks a required key.
    """
    p = Path(path)
    rows: list[dict[str, Any]] = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_bad:
                    continue
                raise AudioError(p, f"line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                if skip_bad:
                    continue
                raise AudioError(p, f"line {n}: not a JSON object ({type(row).__name__})")
            missing = [k for k in require if k not in row]
            if missing:
                raise AudioError(p, f"line {n}: manifest row lacks {', '.join(repr(k) for k in missing)}")
            rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Path(path)


def _manifest_entries(path: Path, errors: str) -> Iterator[ScanEntry]:
    with open(path, encoding="utf-8") as f:
        lines = list(enumerate(f, 1))
    for n, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            reason = f"line {n}: not valid JSON ({e.msg})"
            row = None
        else:
            reason = None
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                reason = f"line {n}: not a manifest row with a 'path' field"
        if reason is not None:
            if errors == "raise":
                raise AudioError(path, reason)
            yield ScanEntry(f"{path}:{n}", f"{path.name}:{n}", None, f"bad manifest {reason}", str(path))
            continue
        rel = Path(row["path"])
        full = rel if rel.is_absolute() else path.parent / rel
        row = dict(row)
        row["path"] = str(full)
        name = rel.name if rel.is_absolute() else rel.as_posix().lstrip("/")
        yield ScanEntry(str(full), name, row, None, str(path))


def scan_audio(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    errors: str = "raise",
) -> list[ScanEntry]:
    """Expand files, folders (recursive, :func:`list_audio_files`) and JSONL manifests into entries, in order.

    Args:
        sources: one source or a list; each a folder, a ``.jsonl``/``.json`` manifest or an audio file.
        extensions: file extensions taken from folders (default: every audio format sonotok reads).
        errors: ``"raise"``: a missing source or bad manifest line raises; ``"report"``: it becomes an
            entry with ``error`` set (the caller reports it and goes on, as ``sonotok tokenize`` does).

    Raises:
        AudioError: with ``errors="raise"``, naming the missing source, the unsupported file, or the
            manifest and line.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    exts = tuple(e.lower() for e in extensions)
    out: list[ScanEntry] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += [ScanEntry(str(f), f.relative_to(p).as_posix(), origin=str(p)) for f in list_audio_files(p, exts)]
        elif is_manifest_path(p) and p.is_file():
            out += list(_manifest_entries(p, errors))
        elif p.is_file() or p.is_symlink():
            if errors == "raise" and p.suffix.lower() not in exts:
                raise AudioError(
                    p, "unsupported source (expected a folder, a .jsonl manifest or an audio file "
                    f"with one of {', '.join(exts)})"
                )
            out.append(ScanEntry(str(p), p.name, origin=str(p)))
        elif errors == "raise":
            raise AudioError(p, "source not found (expected a folder, a .jsonl manifest or an audio file)")
        else:
            out.append(ScanEntry(str(p), p.name, None, "file not found", str(p)))
    return out
