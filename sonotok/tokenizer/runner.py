"""Corpus drivers: :func:`tokenize` (audio files -> codes) and :func:`decode_files` (codes -> audio).

* :func:`tokenize` drives a whole corpus: inputs (files, recursive folders, JSONL manifests), outputs
  mirroring the inputs' relative paths (``.npy`` + ``.json`` sidecar, or ``.safetensors`` shards), a
  JSONL manifest of what was written and what failed (one-line reason), atomic writes and resume
  (finished files whose size and modification time match the manifest are skipped, ``verify="sha256"``
  re-hashes them; a source is matched however its path is spelt). One run at a time per output folder
  (:class:`~sonotok.tokenizer.manifest.RunLock`). Encoding is deterministic on every device
  (:func:`~sonotok.tokenizer.determinism.deterministic_encoding`) and each row records the code variant
  (device kind, precision); finished files of another variant are encoded again, never mixed.
* :func:`decode_files` turns code files back into audio after checking them against the model
  (:func:`sonotok.tokenizer.formats.validate_codes`).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sonotok.data.audio import audio_info, load_audio, save_audio
from sonotok.errors import AudioError, CodesError, SonotokError
from sonotok.tokenizer.determinism import deterministic_encoding, encoding_variant
from sonotok.tokenizer.formats import (
    ShardWriter,
    codes_meta,
    file_digest,
    iter_code_items,
    save_codes,
    validate_codes,
)
from sonotok.tokenizer.inputs import Item, collect_code_files, collect_inputs
from sonotok.tokenizer.manifest import (
    DECODE_MANIFEST_NAME,
    MANIFEST_NAME,
    RunLock,
    Summary,
    _codes_name,
    _Manifest,
    _one_line,
    _progress,
    file_stamp,
    is_verified,
    remove_stale_temps,
    same_source,
    same_variant,
    source_key,
)
from sonotok.tokenizer.ops import EncodedFile, decode_codes, encode_batch, encode_file_info


# ------------------------------------------------------------------------------------------ driver
def run_settings(codec, num_codebooks: Optional[int], batch_size: int) -> Tuple[int, str, int]:
    """``(codebooks written, model id, batch size)`` of a run; a non-causal model is encoded one file at a time
    (padding would change its codes), with a warning."""
    if num_codebooks is not None:
        codec.quantizer.check_num_codebooks(num_codebooks)
    k = int(num_codebooks or codec.num_codebooks)
    model_id = str(getattr(codec, "model_id", getattr(codec, "name", "codec")))
    if batch_size > 1 and not getattr(codec, "causal", True):
        warnings.warn(f"{model_id} is not causal: padding would change its codes, so files are encoded one at a "
                      "time (batch_size=1)", stacklevel=3)
        batch_size = 1
    return k, model_id, batch_size


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
    verify: str = "stamp",
    lock_timeout: Optional[float] = 0.0,
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
        verify: how finished files are checked on resume: ``"stamp"`` (size + modification time, re-hashed
            only when the time differs) or ``"sha256"`` (size + sha256 of every file).
        lock_timeout: seconds to wait when another run holds ``out_dir`` (``0``: refuse at once with
            :class:`~sonotok.tokenizer.manifest.RunLockedError`, ``None``: wait as long as it takes).

    Returns:
        :class:`Summary`; ``summary.failed > 0`` when any file failed (each is in the manifest with its reason).
    """
    if fmt not in ("npy", "safetensors"):
        raise ValueError(f"fmt must be 'npy' or 'safetensors', got {fmt!r}")
    k, model_id, batch_size = run_settings(codec, num_codebooks, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, lock_timeout), deterministic_encoding():
        return _tokenize_locked(codec, inputs, out, num_codebooks, k, model_id, batch_size, fmt, shard_size, channels,
                                long_file_seconds, chunk_seconds, max_batch_seconds, progress, items, manifest_name,
                                verify)


def _tokenize_locked(codec, inputs, out: Path, num_codebooks, k: int, model_id: str, batch_size: int, fmt: str,
                     shard_size: int, channels: str, long_file_seconds: float, chunk_seconds: float,
                     max_batch_seconds: float, progress: bool, items, manifest_name: str, verify: str) -> Summary:
    """:func:`tokenize` once the output folder is locked and encoding is deterministic."""
    remove_stale_temps(out)
    variant = encoding_variant(codec)
    items = collect_inputs(inputs) if items is None else items
    man = _Manifest(out / manifest_name)
    summary = Summary(out_dir=str(out))
    t0 = time.perf_counter()
    bar = _progress(len(items), progress)
    shard_ok: Dict[str, bool] = {}

    def verified(rec: Dict[str, Any]) -> bool:
        return is_verified(rec, out, model_id, k, fmt, shard_ok, variant=variant, verify=verify)

    def other_variant(rec: Dict[str, Any]) -> bool:  # finished and intact, but made on another device/precision
        return not same_variant(rec, variant) and is_verified(rec, out, model_id, k, fmt, shard_ok, verify=verify)

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
        stamp, digest = file_stamp(path), file_digest(path)
        for row in shard_rows:
            man.add({**row, **stamp, "sha256": digest})
        shard, shard_rows = None, []

    def emit(it: Item, enc: EncodedFile) -> None:
        nonlocal shard, next_shard
        meta = codes_meta(codec, enc.codes.shape[-1], enc.num_samples, it.source, enc.duration, k)
        row = {"status": "ok", "rel": it.rel, "source": it.source, "source_key": source_key(it.source),
               "model_id": model_id, "num_codebooks": k, "num_frames": int(enc.codes.shape[-1]),
               "duration": enc.duration, "sample_rate": enc.sample_rate, "format": fmt, **variant}
        if fmt == "npy":
            name = _codes_name(it.rel)
            path = save_codes(out / name, enc.codes, meta)
            man.add({**row, "codes": name, **file_stamp(path), "sha256": file_digest(path)})
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
            if rec is not None and same_source(rec, it.source):
                if verified(rec):
                    summary.skipped += 1
                    bar.update(1)
                    continue
                if other_variant(rec):
                    summary.reencoded += 1
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
            except (SonotokError, OSError, ValueError) as e:  # one file fails, the run goes on
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


def decode_files(codec, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 check_model_id: bool = True, ext: str = ".wav", chunk_frames: int = 3000,
                 progress: bool = True) -> Summary:
    """Decode code files (``.npy`` with sidecar, ``.safetensors`` shards, or folders of them) to audio.

    Outputs mirror the codes' relative names under ``out_dir``; a mismatched file (codebooks, range,
    dtype, model id) is reported in ``decode_manifest.jsonl`` with its reason and the run goes on.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = collect_code_files(inputs)
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
