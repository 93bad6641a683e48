"""Code file formats: one ``.npy`` per file (+ JSON sidecar) or ``.safetensors`` shards for large corpora.

Single file (``x.npy`` + ``x.json``):
    ``x.npy`` holds codes ``[K, F]`` as int16 when every index fits (codebook_size <= 32768), else int32.
    ``x.json`` holds the metadata (:data:`META_KEYS`): frame_rate, num_codebooks, codebook_size, model_id,
    sample_rate, hop_length, num_frames, num_samples (at the model rate, used to crop decoded audio),
    source (path) and source_duration (s). NumPy's ``.npy`` header rejects extra keys, hence the sidecar.

Shard (``shard-00000.safetensors``):
    one tensor ``[K, F]`` per item, keyed by the item's relative path; the safetensors string metadata
    holds ``"sonotok_codes"`` = JSON ``{"common": {...}, "items": {key: {...}}}``.

Every write is atomic (:mod:`sonotok.data.atomic`: temporary file in the same folder, then ``os.replace``). :func:`validate_codes`
checks codes against a model and raises :class:`sonotok.errors.CodesError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from sonotok.data.atomic import atomic_write_bytes
from sonotok.errors import CodesError

FORMAT_VERSION = 1
META_KEYS = (
    "frame_rate", "num_codebooks", "codebook_size", "model_id", "sample_rate", "hop_length",
    "num_frames", "num_samples", "source", "source_duration",
)
SHARD_META_KEY = "sonotok_codes"
CODE_EXTENSIONS = (".npy", ".safetensors")

__all__ = [
    "CODE_EXTENSIONS", "code_dtype", "codes_meta", "save_codes", "load_codes", "ShardWriter", "load_shard",
    "iter_code_items", "validate_codes", "file_digest", "atomic_write_bytes",
]


def code_dtype(codebook_size: int) -> np.dtype:
    """int16 when every index ``< codebook_size`` fits, else int32."""
    return np.dtype(np.int16) if int(codebook_size) <= 2**15 else np.dtype(np.int32)


def codes_meta(codec: Any, num_frames: int, num_samples: int, source: str = "", source_duration: float = 0.0,
               num_codebooks: Optional[int] = None) -> Dict[str, Any]:
    """The metadata recorded with every code item."""
    return {
        "format_version": FORMAT_VERSION,
        "frame_rate": float(codec.frame_rate),
        "num_codebooks": int(num_codebooks or codec.num_codebooks),
        "codebook_size": int(codec.codebook_size),
        "model_id": str(getattr(codec, "model_id", getattr(codec, "name", "codec"))),
        "sample_rate": int(codec.sample_rate),
        "hop_length": int(codec.hop_length),
        "num_frames": int(num_frames),
        "num_samples": int(num_samples),
        "source": str(source),
        "source_duration": float(source_duration),
    }


def file_digest(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _as_array(codes: Any, codebook_size: int) -> np.ndarray:
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise CodesError(f"codes must be [K, F], got shape {list(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        raise CodesError(f"code indices outside [0, {codebook_size}) (min {arr.min()}, max {arr.max()})")
    return np.ascontiguousarray(arr.astype(code_dtype(codebook_size)))


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_codes(path: str | os.PathLike, codes: Any, meta: Mapping[str, Any]) -> Path:
    """Write ``codes [K, F]`` to ``path`` (``.npy``) and ``meta`` to the ``.json`` sidecar, both atomically.

    The sidecar is written first, so an existing ``.npy`` always has its metadata next to it.
    """
    p = Path(path)
    arr = _as_array(codes, int(meta["codebook_size"]))
    meta = dict(meta, dtype=str(arr.dtype), num_codebooks=int(arr.shape[0]), num_frames=int(arr.shape[1]))
    atomic_write_bytes(sidecar_path(p), (json.dumps(meta, sort_keys=True) + "\n").encode())
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(p, buf.getvalue())
    return p


def load_codes(path: str | os.PathLike) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Read a ``.npy`` code file and its sidecar -> ``(codes [K, F], meta)``.

    Raises:
        CodesError: missing/corrupt file or sidecar, wrong dtype or shape.
    """
    p = Path(path)
    if not p.is_file():
        raise CodesError(f"{p}: code file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CodesError(f"{p}: not a readable .npy code file ({str(e).splitlines()[0][:120]})") from e
    side = sidecar_path(p)
    if not side.is_file():
        raise CodesError(f"{p}: metadata sidecar {side.name} is missing")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise CodesError(f"{side}: invalid metadata JSON ({e})") from e
    _check_array(p, arr)
    return arr, meta


def _check_array(p: Path | str, arr: np.ndarray) -> None:
    if arr.dtype not in (np.int16, np.int32, np.int64, np.uint16):
        raise CodesError(f"{p}: wrong dtype {arr.dtype} for codes (expected int16/int32)")
    if arr.ndim != 2:
        raise CodesError(f"{p}: codes must be [K, F], got shape {list(arr.shape)}")


class ShardWriter:
    """Collects code items and writes them to one ``.safetensors`` shard atomically on :meth:`close`.

    Args:
        path: the shard file.
        common: metadata shared by every item (model id, frame rate...).
    """

    def __init__(self, path: str | os.PathLike, common: Mapping[str, Any]):
        self.path = Path(path)
        self.common = dict(common)
        self.tensors: Dict[str, np.ndarray] = {}
        self.items: Dict[str, Dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.tensors)

    def add(self, key: str, codes: Any, meta: Mapping[str, Any]) -> None:
        arr = _as_array(codes, int(meta["codebook_size"]))
        self.tensors[key] = arr
        self.items[key] = {k: v for k, v in meta.items() if self.common.get(k) != v}

    def close(self) -> Path:
        from safetensors.numpy import save

        meta = {SHARD_META_KEY: json.dumps({"common": self.common, "items": self.items}, sort_keys=True)}
        data = save(self.tensors, metadata=meta) if self.tensors else save({}, metadata=meta)
        return atomic_write_bytes(self.path, data)


def load_shard(path: str | os.PathLike) -> Dict[str, Tuple[np.ndarray, Dict[str, Any]]]:
    """Read a shard -> ``{key: (codes [K, F], meta)}``."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CodesError(f"{p}: shard not found")
    try:
        with safe_open(str(p), framework="numpy") as f:
            raw = (f.metadata() or {}).get(SHARD_META_KEY)
            if raw is None:
                raise CodesError(f"{p}: not a sonotok code shard (no '{SHARD_META_KEY}' metadata)")
            info = json.loads(raw)
            out = {}
            for key in f.keys():
                arr = f.get_tensor(key)
                _check_array(f"{p}[{key}]", arr)
                out[key] = (arr, {**info["common"], **info["items"].get(key, {})})
    except CodesError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CodesError(f"{p}: not a readable safetensors shard ({type(e).__name__}: {e})") from e
    return out


def iter_code_items(path: str | os.PathLike) -> Iterator[Tuple[str, np.ndarray, Dict[str, Any]]]:
    """``(name, codes [K, F], meta)`` for a ``.npy`` file (one item) or a shard (each item)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        for key, (arr, meta) in load_shard(p).items():
            yield key, arr, meta
    elif p.suffix == ".npy":
        arr, meta = load_codes(p)
        yield p.stem, arr, meta
    else:
        raise CodesError(f"{p}: unsupported code file extension {p.suffix!r} (expected .npy or .safetensors)")


def validate_codes(codes: np.ndarray, meta: Mapping[str, Any], codec: Any, name: str = "codes",
                   check_model_id: bool = True) -> None:
    """Check that ``codes [K, F]`` with ``meta`` can be decoded by ``codec``.

    Raises:
        CodesError: wrong dtype, wrong number of codebooks, indices out of range, codebook size or frame
            rate mismatch, or a different model id (unless ``check_model_id=False``).
    """
    _check_array(name, codes)
    expected_dtype = meta.get("dtype")
    if expected_dtype is not None and str(codes.dtype) != expected_dtype:
        raise CodesError(f"{name}: dtype {codes.dtype} does not match the recorded {expected_dtype}")
    k = int(codes.shape[0])
    if k != int(meta.get("num_codebooks", k)):
        raise CodesError(f"{name}: holds {k} codebooks but its metadata says {meta['num_codebooks']}")
    if not 1 <= k <= codec.num_codebooks:
        raise CodesError(f"{name}: {k} codebooks, but the model has {codec.num_codebooks} (wrong number of codebooks)")
    try:
        codec.quantizer.check_num_codebooks(k)
    except ValueError as e:
        raise CodesError(f"{name}: {e}") from e
    if int(meta.get("codebook_size", codec.codebook_size)) != codec.codebook_size:
        raise CodesError(f"{name}: codebook size {meta['codebook_size']} != the model's {codec.codebook_size}")
    if codes.size:
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= codec.codebook_size:
            raise CodesError(f"{name}: code indices out of range [0, {codec.codebook_size}) (min {lo}, max {hi})")
    fr = meta.get("frame_rate")
    if fr is not None and abs(float(fr) - float(codec.frame_rate)) > 1e-6:
        raise CodesError(f"{name}: frame rate {fr} Hz != the model's {codec.frame_rate} Hz")
    mid = getattr(codec, "model_id", None)
    if check_model_id and mid is not None and meta.get("model_id") not in (None, mid):
        raise CodesError(f"{name}: encoded by model {meta['model_id']!r}, not by {mid!r} (different model id)")
