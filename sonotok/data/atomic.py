"""Atomic file and directory writes: readers see the old content or the new one, never half a file.

The one implementation used by every writer of the package (code files and manifests, audio, export
artifacts, model directories, JSONL). A file is written to a temporary name in the same folder
(``.<name>.<random>.tmp``, the pattern :func:`sonotok.tokenizer.manifest.remove_stale_temps` cleans up
after a kill) and renamed over the target with ``os.replace``; a directory is built under a temporary
name and swapped in.

It lives in ``sonotok/data`` because that is the lowest room (rank 1 in docs/ARCHITECTURE.md) that every
writer may import: ``data.audio`` itself, ``model_io`` (rank 4), ``tokenizer`` and ``export`` (rank 5).
It imports nothing from sonotok, so any module of ``data`` can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False, mode: int = 0o644) -> Iterator[str]:
    """Yield a temporary file name next to ``path``; when the block succeeds it replaces ``path``
    (permissions ``mode``), when it raises the temporary file is removed and ``path`` is untouched.

    Args:
        path: the destination (its folder is created).
        fsync: flush the file to disk before the rename (durable across a power loss, not only a kill).
        mode: permissions of the written file (``mkstemp`` creates it 0600).

    Example:
        >>> with atomic_path("x.pt") as tmp:
        ...     torch.jit.save(module, tmp)
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=TEMP_SUFFIX, dir=p.parent)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`); returns the path."""
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; when the block succeeds it takes the place of
    ``path`` (an existing directory there is replaced), when it raises it is removed.

    The swap is two renames (old aside, new in), so a reader sees either the old directory or the new one;
    a kill between them leaves the old one at ``.<name>.old`` (removed by the next successful write).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
