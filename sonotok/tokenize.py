"""File-level tokenization: audio files -> discrete codes -> audio, at corpus scale.

* :func:`encode_batch` encodes a list of items of different lengths as one zero-padded batch and crops
  each item's codes to ``ceil(len / hop)`` frames. The default models are causal and
  :meth:`Codec.encode` pads to whole frames, so the codes equal those of each item encoded alone.
* :func:`encode_file` reads a file; files longer than ``long_file_seconds`` are read block by block and
  streamed through ``codec.encode_step`` (bounded memory, identical codes; the last partial frame is
  flushed by zero-padding it to a whole hop, exactly like :meth:`Codec.pad_to_frames`).
* :func:`tokenize` drives a whole corpus: inputs (files, recursive folders, JSONL manifests), outputs
  mirroring the inputs' relative paths (``.npy`` + ``.json`` sidecar, or ``.safetensors`` shards), a
  JSONL manifest of what was written and what failed (one-line reason), atomic writes and resume
  (finished files verified by size + sha256 from the manifest are skipped).
* :func:`decode_codes`, :func:`decode_batch`, :func:`decode_files` turn codes back into audio after
  checking them against the model (:func:`sonotok.codes_io.validate_codes`).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import Tensor

from sonotok.codes_io import (
    ShardWriter,
    atomic_write_bytes,
    codes_meta,
    file_digest,
    iter_code_items,
    save_codes,
    validate_codes,
)
from sonotok.data.audio import AUDIO_EXTENSIONS, audio_info, load_audio, resample, save_audio
from sonotok.errors import AudioError, CodesError

MANIFEST_NAME = "manifest.jsonl"
DECODE_MANIFEST_NAME = "decode_manifest.jsonl"
INPUT_EXTENSIONS = tuple(sorted(set(AUDIO_EXTENSIONS) | {"." + f.lower() for f in sf.available_formats()}
                                - {".raw", ".mat4", ".mat5"}))

__all__ = [
    "Item", "collect_inputs", "encode_batch", "encode_file", "encode_stream", "read_blocks", "decode_codes",
    "decode_batch", "decode_files", "tokenize", "format_summary", "MANIFEST_NAME",
]


# ------------------------------------------------------------------------------------------ encoding
def _device(codec) -> torch.device:
    p = next(codec.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _as_ct(codec, wav: Tensor | np.ndarray) -> Tensor:
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[0] != codec.channels:
        raise ValueError(f"expected one item as [T] or [{codec.channels}, T], got {list(wav.shape)}")
    return wav


@torch.no_grad()
def encode_batch(codec, wavs: Sequence[Tensor | np.ndarray], sample_rate: Optional[int] = None,
                 num_codebooks: Optional[int] = None) -> List[Tensor]:
    """Encode items of different lengths in one zero-padded batch.

    Args:
        codec: a :class:`~sonotok.codecs.Codec`.
        wavs: items ``[T_i]`` or ``[C, T_i]``.
        sample_rate: the rate of every item (resampled per item to the model's rate).
        num_codebooks: keep the first ``K`` codebooks.

    Returns:
        one ``codes [K, ceil(T_i' / hop)]`` int64 tensor per item (``T_i'``: length at the model's rate),
        identical to encoding each item alone.
    """
    if len(wavs) == 0:
        return []
    dev = _device(codec)
    items = [_as_ct(codec, w) for w in wavs]
    if sample_rate is not None and int(sample_rate) != codec.sample_rate:
        items = [resample(w, int(sample_rate), codec.sample_rate) for w in items]
    lengths = [int(w.shape[-1]) for w in items]
    if min(lengths) <= 0:
        raise ValueError(f"empty item in batch (lengths {lengths})")
    t = max(codec.num_frames(n) for n in lengths) * codec.hop_length
    batch = torch.stack([F.pad(w, (0, t - w.shape[-1])) for w in items]).to(dev)
    codes = codec.encode(batch, num_codebooks=num_codebooks).cpu()
    return [codes[i, :, : codec.num_frames(n)].clone() for i, n in enumerate(lengths)]


@torch.no_grad()
def encode_stream(codec, blocks: Iterable[Tensor], num_codebooks: Optional[int] = None) -> Tuple[Tensor, int]:
    """Stream blocks ``[C, t]`` (at the model's rate) through ``codec.encode_step``.

    Memory is bounded by the block size (plus the codes). The final partial frame is zero-padded to a whole
    hop, so the result equals ``codec.encode`` on the concatenated audio.

    Returns:
        ``(codes [K, F] int64, num_samples)``.
    """
    dev = _device(codec)
    enc_state, _ = codec.init_state(1)
    enc_state = [s.to(dev) for s in enc_state]
    out: List[Tensor] = []
    total = 0
    for block in blocks:
        block = _as_ct(codec, block)
        if block.shape[-1] == 0:
            continue
        total += int(block.shape[-1])
        codes, enc_state = codec.encode_step(block[None].to(dev), enc_state)
        if codes.shape[-1]:
            out.append(codes[0].cpu())
    extra = (-total) % codec.hop_length
    if extra:
        codes, enc_state = codec.encode_step(torch.zeros(1, codec.channels, extra, device=dev), enc_state)
        out.append(codes[0].cpu())
    if total == 0:
        raise ValueError("no audio in stream")
    codes = torch.cat(out, dim=-1)
    if num_codebooks is not None:
        codes = codes[: codec.quantizer.check_num_codebooks(num_codebooks)]
    assert codes.shape[-1] == codec.num_frames(total), (codes.shape, total)
    return codes, total


def read_blocks(path: str | os.PathLike, block_frames: int, channels: str = "downmix",
                num_channels: int = 1) -> Iterator[Tensor]:
    """Read a file block by block as float32 ``[C, t]`` (file's own rate), checking every block.

    Raises:
        AudioError: as :func:`sonotok.data.audio.load_audio` (header problems, NaN/Inf, channel policy).
    """
    p = Path(path)
    info = audio_info(p)
    if info.channels != num_channels and channels == "reject":
        raise AudioError(p, f"wrong channel count: {info.channels} channels, expected {num_channels} "
                            "(channels='reject')")
    n = 0
    try:
        for data in sf.blocks(str(p), blocksize=block_frames, dtype="float32", always_2d=True):
            if not np.isfinite(data).all():
                kind = "NaN" if np.isnan(data).any() else "Inf"
                raise AudioError(p, f"{kind} samples (at {n / info.sample_rate:.2f}s)")
            n += data.shape[0]
            wav = torch.from_numpy(np.ascontiguousarray(data.T))
            if wav.shape[0] != num_channels:
                wav = wav.mean(0, keepdim=True) if channels == "downmix" else wav[:num_channels]
            yield wav
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(p, f"cannot decode audio data ({str(e).splitlines()[-1][:160]})") from e
    if n == 0:
        raise AudioError(p, "zero-length audio (no decodable samples; truncated data?)")


@dataclass
class EncodedFile:
    """Codes of one file with what was learned while reading it."""

    codes: Tensor  # [K, F] int64
    num_samples: int  # at the model's rate
    duration: float  # source seconds
    sample_rate: int  # source rate


def encode_file_info(codec, path: str | os.PathLike, num_codebooks: Optional[int] = None,
                     channels: str = "downmix", long_file_seconds: float = 60.0,
                     chunk_seconds: float = 10.0) -> EncodedFile:
    """:func:`encode_file` returning :class:`EncodedFile` (codes, length, source duration and rate)."""
    info = audio_info(path)
    if info.duration > long_file_seconds:
        block = max(1, int(chunk_seconds * info.sample_rate))
        if info.sample_rate == codec.sample_rate:
            blocks = read_blocks(path, block, channels, codec.channels)
        else:
            # Resampling in blocks would not match whole-file resampling bit for bit: resample the whole
            # file (float32 audio) and still stream the encoder (its activations dominate memory).
            wav = load_audio(path, codec.sample_rate, channels=channels)
            step = max(1, int(chunk_seconds * codec.sample_rate))
            blocks = (wav[:, i: i + step] for i in range(0, wav.shape[-1], step))
        codes, n = encode_stream(codec, blocks, num_codebooks)
        return EncodedFile(codes, n, info.duration, info.sample_rate)
    wav = load_audio(path, codec.sample_rate, channels=channels)
    codes = encode_batch(codec, [wav], num_codebooks=num_codebooks)[0]
    return EncodedFile(codes, int(wav.shape[-1]), info.duration, info.sample_rate)


def encode_file(codec, path: str | os.PathLike, num_codebooks: Optional[int] = None, channels: str = "downmix",
                long_file_seconds: float = 60.0, chunk_seconds: float = 10.0) -> Tensor:
    """Encode one audio file -> ``codes [K, F]`` (int64).

    Files longer than ``long_file_seconds`` are streamed in ``chunk_seconds`` blocks (bounded memory,
    identical codes).

    Raises:
        AudioError: a file that cannot be used as audio (names the file and the reason).
    """
    return encode_file_info(codec, path, num_codebooks, channels, long_file_seconds, chunk_seconds).codes


# ------------------------------------------------------------------------------------------ decoding
@torch.no_grad()
def decode_codes(codec, codes: Tensor | np.ndarray, length: Optional[int] = None, chunk_frames: int = 0) -> Tensor:
    """``codes [K, F] -> wav [C, T]`` (``T = length`` or ``F * hop``).

    ``chunk_frames > 0`` streams through ``codec.decode_step`` in chunks of that many frames (bounded memory
    for long code files; equal to offline decoding within float tolerance).
    """
    dev = _device(codec)
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes).long().to(dev)
    if codes.dim() != 2:
        raise CodesError(f"codes must be [K, F], got {list(codes.shape)}")
    if chunk_frames and codes.shape[-1] > chunk_frames:
        _, state = codec.init_state(1)
        state = [s.to(dev) for s in state]
        parts = []
        for i in range(0, codes.shape[-1], chunk_frames):
            wav, state = codec.decode_step(codes[None, :, i: i + chunk_frames], state)
            parts.append(wav[0].cpu())
        wav = torch.cat(parts, -1)
    else:
        wav = codec.decode(codes[None])[0].cpu()
    return wav[..., :length] if length is not None else wav


@torch.no_grad()
def decode_batch(codec, codes_list: Sequence[Tensor | np.ndarray], lengths: Optional[Sequence[int]] = None
                 ) -> List[Tensor]:
    """Decode items ``[K, F_i]`` in one batch (padded with code 0; the causal decoder never lets padding leak
    backwards) -> one ``[C, T_i]`` per item (``T_i = lengths[i]`` or ``F_i * hop``)."""
    if len(codes_list) == 0:
        return []
    dev = _device(codec)
    items = [torch.as_tensor(np.asarray(c) if not isinstance(c, Tensor) else c).long() for c in codes_list]
    ks = {c.shape[0] for c in items}
    if len(ks) != 1:
        raise CodesError(f"all items of a batch need the same number of codebooks, got {sorted(ks)}")
    f = max(c.shape[-1] for c in items)
    batch = torch.stack([F.pad(c, (0, f - c.shape[-1])) for c in items]).to(dev)
    wav = codec.decode(batch).cpu()
    out = []
    for i, c in enumerate(items):
        n = c.shape[-1] * codec.hop_length if lengths is None else int(lengths[i])
        out.append(wav[i, :, :n].clone())
    return out


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


# ------------------------------------------------------------------------------------------ manifest
def _read_manifest(path: Path) -> Dict[str, Dict[str, Any]]:
    """Latest record per relative name; a torn last line (killed run) is ignored."""
    out: Dict[str, Dict[str, Any]] = {}
    if not path.is_file():
        return out
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "rel" in row:
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


# ------------------------------------------------------------------------------------------ driver
def tokenize(
    codec,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    num_codebooks: Optional[int] = None,
    batch_size: int = 8,
    fmt: str = "npy",
    shard_size: int = 1000,
    channels: str = "downmix",
    long_file_seconds: float = 60.0,
    chunk_seconds: float = 10.0,
    max_batch_seconds: float = 600.0,
    progress: bool = True,
    items: Optional[List[Item]] = None,
    manifest_name: str = MANIFEST_NAME,
) -> Summary:
    """Tokenize a corpus to ``out_dir`` (see the module docstring).

    Args:
        codec: the model (eval mode; its ``model_id`` is recorded).
        inputs: files, folders (recursive) and ``.jsonl`` manifests.
        out_dir: output folder; codes mirror the inputs' relative paths, plus ``manifest.jsonl``.
        num_codebooks: write only the first ``K`` codebooks.
        batch_size: files per padded batch (files are sorted by length to limit padding).
        fmt: ``"npy"`` (one ``.npy`` + ``.json`` per file) or ``"safetensors"`` (shards of ``shard_size``).
        channels: ``"downmix"``, ``"reject"`` or ``"first"`` for multichannel input.
        long_file_seconds: files longer than this are streamed in ``chunk_seconds`` blocks.
        max_batch_seconds: cap on the padded audio of one batch.
        progress: show a tqdm bar (files/s, audio hours/s).
        items: pre-collected items (instead of ``inputs``).

    Returns:
        :class:`Summary`; ``summary.failed > 0`` when any file failed (each is in the manifest with its reason).
    """
    if fmt not in ("npy", "safetensors"):
        raise ValueError(f"fmt must be 'npy' or 'safetensors', got {fmt!r}")
    if num_codebooks is not None:
        codec.quantizer.check_num_codebooks(num_codebooks)
    k = int(num_codebooks or codec.num_codebooks)
    model_id = str(getattr(codec, "model_id", getattr(codec, "name", "codec")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    items = collect_inputs(inputs) if items is None else items
    man = _Manifest(out / manifest_name)
    summary = Summary(out_dir=str(out))
    t0 = time.perf_counter()
    bar = _progress(len(items), progress)
    shard_ok: Dict[str, bool] = {}

    def verified(rec: Dict[str, Any]) -> bool:
        return is_verified(rec, out, model_id, k, fmt, shard_ok)

    def tick(seconds: float = 0.0) -> None:
        summary.audio_seconds += seconds
        el = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{summary.written / el:.2f} files/s, {summary.audio_seconds / 3600 / el:.4f} audio-h/s, "
                            f"{summary.failed} failed", refresh=False)
        bar.update(1)

    def fail(it: Item, reason: str) -> None:
        summary.failed += 1
        summary.failures.append((it.source, reason))
        man.add({"status": "failed", "rel": it.rel, "source": it.source, "reason": reason})
        tick()

    shard: Optional[ShardWriter] = None
    shard_rows: List[Dict[str, Any]] = []
    if fmt == "safetensors":  # a shard no manifest row refers to was orphaned by a kill: its items are redone
        referenced = {r.get("codes") for r in man.rows.values() if r.get("format") == "safetensors"}
        for p in out.glob("shard-*.safetensors"):
            if p.name not in referenced:
                p.unlink()
    next_shard = 1 + max([int(p.stem.split("-")[-1]) for p in out.glob("shard-*.safetensors")
                          if p.stem.split("-")[-1].isdigit()] + [-1])

    def flush_shard() -> None:
        nonlocal shard, shard_rows
        if shard is None or len(shard) == 0:
            return
        path = shard.close()
        size, digest = path.stat().st_size, file_digest(path)
        for row in shard_rows:
            man.add({**row, "size": size, "sha256": digest})
        shard, shard_rows = None, []

    def emit(it: Item, enc: EncodedFile) -> None:
        nonlocal shard, next_shard
        meta = codes_meta(codec, enc.codes.shape[-1], enc.num_samples, it.source, enc.duration, k)
        row = {"status": "ok", "rel": it.rel, "source": it.source, "model_id": model_id, "num_codebooks": k,
               "num_frames": int(enc.codes.shape[-1]), "duration": enc.duration, "sample_rate": enc.sample_rate,
               "format": fmt}
        if fmt == "npy":
            name = _codes_name(it.rel)
            path = save_codes(out / name, enc.codes, meta)
            man.add({**row, "codes": name, "size": path.stat().st_size, "sha256": file_digest(path)})
        else:
            if shard is None:
                shard = ShardWriter(out / f"shard-{next_shard:05d}.safetensors",
                                    {key: meta[key] for key in ("frame_rate", "codebook_size", "model_id",
                                                                "sample_rate", "hop_length", "format_version")})
                next_shard += 1
            shard.add(it.rel, enc.codes, meta)
            shard_rows.append({**row, "codes": shard.path.name, "key": it.rel})
            if len(shard) >= shard_size:
                flush_shard()
        summary.written += 1
        tick(enc.duration)

    try:
        pending: List[Tuple[Item, Any]] = []
        for it in items:
            if it.error:
                fail(it, it.error)
                continue
            rec = man.rows.get(it.rel)
            if rec is not None and rec.get("source") == it.source and verified(rec):
                summary.skipped += 1
                bar.update(1)
                continue
            try:
                info = audio_info(it.source)
            except AudioError as e:
                fail(it, e.reason)
                continue
            except OSError as e:
                fail(it, _one_line(e))
                continue
            pending.append((it, info))

        short = [(it, info) for it, info in pending if info.duration <= long_file_seconds]
        long = [(it, info) for it, info in pending if info.duration > long_file_seconds]
        for it, _info in long:
            try:
                enc = encode_file_info(codec, it.source, num_codebooks, channels, long_file_seconds, chunk_seconds)
            except (AudioError, OSError, ValueError) as e:
                fail(it, _one_line(e))
                continue
            emit(it, enc)

        short.sort(key=lambda x: x[1].duration)
        i = 0
        while i < len(short):
            group = [short[i]]
            i += 1
            while (i < len(short) and len(group) < batch_size
                   and short[i][1].duration * (len(group) + 1) <= max_batch_seconds):
                group.append(short[i])
                i += 1
            loaded = []
            for it, info in group:
                try:
                    wav = load_audio(it.source, codec.sample_rate, channels=channels)
                except (AudioError, OSError, ValueError) as e:
                    fail(it, _one_line(e))
                    continue
                loaded.append((it, info, wav))
            if not loaded:
                continue
            codes = encode_batch(codec, [w for _, _, w in loaded], num_codebooks=num_codebooks)
            for (it, info, wav), c in zip(loaded, codes):
                emit(it, EncodedFile(c, int(wav.shape[-1]), info.duration, info.sample_rate))
        flush_shard()
    finally:
        bar.close()
        man.close()
    summary.elapsed = time.perf_counter() - t0
    return summary


def _collect_code_files(inputs: Sequence[str | os.PathLike]) -> List[Item]:
    items: List[Item] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            items += _scan_folder(p, (".npy", ".safetensors"))
        else:
            items.append(Item(str(p), p.name, None if p.exists() else "file not found"))
    return items


def decode_files(codec, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 check_model_id: bool = True, ext: str = ".wav", chunk_frames: int = 3000,
                 progress: bool = True) -> Summary:
    """Decode code files (``.npy`` with sidecar, ``.safetensors`` shards, or folders of them) to audio.

    Outputs mirror the codes' relative names under ``out_dir``; a mismatched file (codebooks, range,
    dtype, model id) is reported in ``decode_manifest.jsonl`` with its reason and the run goes on.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = _collect_code_files(inputs)
    man = _Manifest(out / DECODE_MANIFEST_NAME)
    summary = Summary(out_dir=str(out))
    t0 = time.perf_counter()
    bar = _progress(len(items), progress)
    try:
        for it in items:
            try:
                if it.error:
                    raise CodesError(it.error)
                for name, arr, meta in iter_code_items(it.source):
                    rel = name if it.source.endswith(".safetensors") else it.rel
                    validate_codes(arr, meta, codec, f"{it.source}" + (f"[{name}]" if rel == name else ""),
                                   check_model_id=check_model_id)
                    wav = decode_codes(codec, arr, meta.get("num_samples"), chunk_frames)
                    dst = out / Path(rel).with_suffix(ext)
                    save_audio(dst, wav, codec.sample_rate)
                    man.add({"status": "ok", "rel": rel, "source": it.source, "audio": str(dst.relative_to(out))})
                    summary.written += 1
                    summary.audio_seconds += wav.shape[-1] / codec.sample_rate
            except (CodesError, OSError, ValueError) as e:
                reason = str(e).splitlines()[0] if isinstance(e, CodesError) else _one_line(e)
                summary.failed += 1
                summary.failures.append((it.source, reason))
                man.add({"status": "failed", "rel": it.rel, "source": it.source, "reason": reason})
            bar.update(1)
    finally:
        bar.close()
        man.close()
    summary.elapsed = time.perf_counter() - t0
    return summary


def frames_for_seconds(codec, seconds: float) -> int:
    """Code frames for ``seconds`` of audio at the model's rate."""
    return int(math.ceil(seconds * codec.sample_rate / codec.hop_length))
