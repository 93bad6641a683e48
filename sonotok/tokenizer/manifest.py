"""The run manifest (one JSON line per finished or failed item), resume and verification, summaries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sonotok.data.sources import read_jsonl
from sonotok.errors import AudioError
from sonotok.tokenizer.formats import (
    atomic_write_bytes,
    file_digest,
)

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


def is_verified(rec: Dict[str, Any], out: Path, model_id: str, num_codebooks: int, fmt: str = "npy",
                cache: Optional[Dict[str, bool]] = None) -> bool:
    """Whether a manifest record is a finished item of this model/bitrate whose code file is intact
    (size and sha256 as recorded)."""
    if rec.get("status") != "ok" or rec.get("model_id") != model_id or rec.get("num_codebooks") != num_codebooks:
        return False
    if rec.get("format", "npy") != fmt or "codes" not in rec:
        return False
    cache = {} if cache is None else cache
    if rec["codes"] not in cache:
        p = out / rec["codes"]
        good = p.is_file() and p.stat().st_size == rec.get("size") and file_digest(p) == rec.get("sha256")
        if fmt == "npy":
            good = good and p.with_suffix(".json").is_file()
        cache[rec["codes"]] = good
    return cache[rec["codes"]]


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
