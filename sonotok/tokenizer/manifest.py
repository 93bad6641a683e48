"""The run manifest (one JSON line per finished or failed item), resume and verification, summaries.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sonotok.data.sources import read_jsonl
from sonotok.errors import AudioError, SonotokError
from sonotok.tokenizer.determinism import VARIANT_KEYS
from sonotok.tokenizer.formats import atomic_write_bytes, file_digest

MANIFEST_NAME = "manifest.jsonl"
DECODE_MANIFEST_NAME = "decode_manifest.jsonl"


# ------------------------------------------------------------------------------------------ manifest
def _read_manifest(path: Path) -> Dict[str, Dict[str, Any]]:
    """Latest record per relative name; a torn last line (killed run) is ignored."""
    out: Dict[str, Dict[str, Any]] = {}
    if not path.is_file():
        return out
    for row in read_jsonl(path, skip_bad=True):
        if "rel" in row:
            out[row["rel"]] = row
    return out


def source_key(path: str) -> str:
    """The spelling-independent identity of an input (absolute, symlinks and ``..`` resolved)."""
    return os.path.realpath(path)


def same_source(rec: Dict[str, Any], source: str) -> bool:
    """Whether a manifest record was made from ``source`` (however either path was spelt: relative to
    another working directory, through a symlink, with ``..``)."""
    if rec.get("source") == source:
        return True
    return rec.get("source_key", source_key(str(rec.get("source", "")))) == source_key(source)


def file_stamp(path: Path) -> Dict[str, int]:
    """``{"size", "mtime_ns"}`` of a written output, recorded with its sha256."""
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def is_verified(rec: Dict[str, Any], out: Path, model_id: str, num_codebooks: int, fmt: str = "npy",
                cache: Optional[Dict[str, bool]] = None, variant: Optional[Dict[str, str]] = None,
                verify: str = "stamp") -> bool:
    """Whether a manifest record is a finished item of this model/bitrate (and code variant, when given)
    whose code file is intact.

    Args:
        verify: ``"stamp"``: size and modification time as recorded (the sha256 is computed only when the
            time differs, e.g. a file copied or touched); ``"sha256"``: size and sha256 of every file.
    """
    if verify not in ("stamp", "sha256"):
        raise ValueError(f"verify must be 'stamp' or 'sha256', got {verify!r}")
    if rec.get("status") != "ok" or rec.get("model_id") != model_id or rec.get("num_codebooks") != num_codebooks:
        return False
    if rec.get("format", "npy") != fmt or "codes" not in rec:
        return False
    if variant is not None and not same_variant(rec, variant):
        return False
    cache = {} if cache is None else cache
    if rec["codes"] not in cache:
        p = out / rec["codes"]
        good = p.is_file() and p.stat().st_size == rec.get("size")
        if good and not (verify == "stamp" and p.stat().st_mtime_ns == rec.get("mtime_ns")):
            good = file_digest(p) == rec.get("sha256")
        if fmt == "npy":
            good = good and p.with_suffix(".json").is_file()
        cache[rec["codes"]] = good
    return cache[rec["codes"]]


def same_variant(rec: Dict[str, Any], variant: Dict[str, str]) -> bool:
    """Whether a record's codes were made by the same code variant (device kind, precision). Records
    written before variants were recorded count as ``cpu`` / ``float32``, the only deterministic setting
    then."""
    legacy = {"device": "cpu", "precision": "float32"}
    return all(rec.get(k, legacy[k]) == variant.get(k) for k in VARIANT_KEYS)


def remove_stale_temps(out: Path) -> int:
    """Delete temporary files left by a killed run (``.name.<random>.tmp``, written by this package)."""
    n = 0
    for p in out.rglob(".*.tmp"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


def _one_line(e: BaseException) -> str:
    if isinstance(e, AudioError):
        return e.reason
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200] if msg else ''}".strip()


def _codes_name(rel: str) -> str:
    return str(Path(rel).with_suffix(".npy").as_posix()) if Path(rel).suffix else rel + ".npy"


@dataclass
class Summary:
    """What a run did."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    failures: List[Tuple[str, str]] = field(default_factory=list)
    out_dir: str = ""
    reencoded: int = 0  # finished files of another code variant (device / precision), encoded again

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def as_dict(self) -> Dict[str, Any]:
        return {"written": self.written, "skipped": self.skipped, "failed": self.failed,
                "audio_hours": self.audio_seconds / 3600, "elapsed_s": self.elapsed,
                "files_per_s": self.written / max(self.elapsed, 1e-9),
                "audio_hours_per_hour": self.audio_seconds / max(self.elapsed, 1e-9)}


def format_summary(s: Summary, what: str = "tokenized") -> str:
    d = s.as_dict()
    lines = [f"{what} {s.written} files ({d['audio_hours'] * 60:.2f} min of audio) in {s.elapsed:.1f}s "
             f"[{d['files_per_s']:.2f} files/s, {d['audio_hours_per_hour']:.0f}x real time], "
             f"skipped {s.skipped} already done, failed {s.failed}" + (f" -> {s.out_dir}" if s.out_dir else "")]
    if s.reencoded:
        lines.append(f"  re-encoded {s.reencoded} finished files made on another device or precision "
                     "(one folder never mixes code variants)")
    for src, reason in s.failures[:20]:
        lines.append(f"  FAILED {src}: {reason}")
    if len(s.failures) > 20:
        lines.append(f"  ... and {len(s.failures) - 20} more (see the manifest)")
    return "\n".join(lines)


class _Manifest:
    """Appends one JSON line per finished item (flushed), compacted atomically at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = _read_manifest(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a")

    def add(self, row: Dict[str, Any]) -> None:
        self.rows[row["rel"]] = row
        self.f.write(json.dumps(row, sort_keys=True) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()
        data = "".join(json.dumps(self.rows[k], sort_keys=True) + "\n" for k in sorted(self.rows))
        atomic_write_bytes(self.path, data.encode())


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, smoothing=0.1)


# ------------------------------------------------------------------------------------------ run lock
LOCK_NAME = ".sonotok-tokenize.lock"


class RunLockedError(SonotokError):
    """Another tokenization run holds the output folder."""


class RunLock:
    """An exclusive lock on an output folder, held by one tokenization run at a time.

    ``flock`` on ``<out>/.sonotok-tokenize.lock``, which holds the owner's pid, host and start time for the
    message a second run gets. The kernel releases the lock when its owner exits, however it exits, so the
    lock of a killed run is taken over at once (its file is reused; the pid in it is only informative).

    Args:
        out: the output folder (created).
        timeout: seconds to wait for the folder to be free (``0``: refuse at once, ``None``: wait forever).
    """

    def __init__(self, out: str | os.PathLike, timeout: Optional[float] = 0.0, poll: float = 0.2):
        self.path = Path(out) / LOCK_NAME
        self.timeout = timeout
        self.poll = poll
        self.fd: Optional[int] = None

    def _owner(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return "another process"
        return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.get('started', 0)))}")

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"{self.path.parent}: another sonotok tokenize run ({self._owner()}) is writing to this "
                        f"output folder; wait for it to finish (--wait SECONDS waits) or use another --out"
                    ) from None
                time.sleep(self.poll)
                continue
            try:  # the file may have been removed by its previous owner after we opened it: lock the live one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": time.time()}).encode())
            self.fd = fd
            return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding the lock: a waiter re-checks the inode it locked
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
