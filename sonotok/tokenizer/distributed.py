"""Corpus tokenization on Lightning's distributed engine.

``Trainer.predict`` runs :class:`TokenizeModule` over a :class:`FileDataset` (Lightning shards it across
ranks with an unrepeated distributed sampler); :class:`CodesWriter` (a ``BasePredictionWriter``) writes
each rank's code files atomically and appends to that rank's own manifest ``manifest.rank{R}.jsonl``;
rank 0 merges them into ``manifest.jsonl`` (:func:`merge_manifests`). Works with DDP across GPUs and
nodes (``strategy="ddp"``, launched per node as usual) and on CPU with gloo (``ddp_spawn``), which the
tests use. Outputs are identical to :func:`sonotok.tokenizer.tokenize` (same layout, same codes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from sonotok.data.audio import audio_info, load_audio
from sonotok.errors import AudioError
from sonotok.tokenizer.formats import atomic_write_bytes, codes_meta, file_digest, save_codes
from sonotok.tokenizer.inputs import Item, collect_inputs
from sonotok.tokenizer.manifest import (
    MANIFEST_NAME,
    Summary,
    _codes_name,
    _one_line,
    _read_manifest,
    is_verified,
    remove_stale_temps,
)
from sonotok.tokenizer.ops import EncodedFile, encode_batch, encode_file_info

__all__ = ["FileDataset", "TokenizeModule", "CodesWriter", "merge_manifests", "tokenize_distributed"]


class FileDataset(Dataset):
    """Items -> ``{"index", "wav" | None, "error" | None, "duration", "sample_rate", "long"}``.

    Bad files do not raise: they carry their one-line reason to the writer. Long files are not loaded here;
    the module streams them (bounded memory).
    """

    def __init__(self, items: Sequence[Item], sample_rate: int, channels: str = "downmix",
                 long_file_seconds: float = 60.0):
        self.items = list(items)
        self.sample_rate = sample_rate
        self.channels = channels
        self.long_file_seconds = long_file_seconds

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        it = self.items[i]
        row: Dict[str, Any] = {"index": i, "wav": None, "error": it.error, "duration": 0.0, "sample_rate": 0,
                               "long": False}
        if it.error:
            return row
        try:
            info = audio_info(it.source)
            row.update(duration=info.duration, sample_rate=info.sample_rate)
            if info.duration > self.long_file_seconds:
                row["long"] = True
            else:
                row["wav"] = load_audio(it.source, self.sample_rate, channels=self.channels)
        except (AudioError, OSError, ValueError) as e:
            row["error"] = _one_line(e)
        return row


def _collate(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return batch


class TokenizeModule(LightningModule):
    """Wraps a codec for ``Trainer.predict``: a batch of loaded items -> codes per item."""

    def __init__(self, codec, items: Sequence[Item], num_codebooks: Optional[int] = None, channels: str = "downmix",
                 long_file_seconds: float = 60.0, chunk_seconds: float = 10.0):
        super().__init__()
        self.codec = codec
        self.items = list(items)
        self.num_codebooks = num_codebooks
        self.channels = channels
        self.long_file_seconds = long_file_seconds
        self.chunk_seconds = chunk_seconds

    # ddp_spawn pickles the module, and weight-norm parametrizations cannot be pickled: ship the model
    # directory instead and reload it in each process (same weights, same model id).
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        mods = dict(state["_modules"])
        codec = mods.pop("codec")
        model_dir = getattr(codec, "model_dir", None)
        if model_dir is None:
            raise RuntimeError("distributed tokenization with spawned processes needs a codec loaded with "
                               "sonotok.load(model_dir) (it is reloaded in every process)")
        state["_modules"] = mods
        state["_codec_dir"] = str(model_dir)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        from sonotok.model_io import load_model

        model_dir = state.pop("_codec_dir")
        self.__dict__.update(state)
        self._modules["codec"] = load_model(model_dir)

    def predict_step(self, batch: List[Dict[str, Any]], batch_idx: int = 0) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        short = [b for b in batch if b["wav"] is not None and b["error"] is None]
        codes = encode_batch(self.codec, [b["wav"] for b in short], num_codebooks=self.num_codebooks)
        done = {b["index"]: EncodedFile(c, int(b["wav"].shape[-1]), b["duration"], b["sample_rate"])
                for b, c in zip(short, codes)}
        for b in batch:
            res: Dict[str, Any] = {"index": b["index"], "error": b["error"], "encoded": done.get(b["index"])}
            if b["long"] and b["error"] is None:
                try:
                    res["encoded"] = encode_file_info(self.codec, self.items[b["index"]].source, self.num_codebooks,
                                                      self.channels, self.long_file_seconds, self.chunk_seconds)
                except (AudioError, OSError, ValueError) as e:
                    res["error"] = _one_line(e)
            out.append(res)
        return out


class CodesWriter(BasePredictionWriter):
    """Writes each rank's codes (atomic ``.npy`` + ``.json``) and its own ``manifest.rank{R}.jsonl``."""

    def __init__(self, out_dir: str | os.PathLike, items: Sequence[Item], num_codebooks: Optional[int] = None):
        super().__init__(write_interval="batch")
        self.out = Path(out_dir)
        self.items = list(items)
        self.num_codebooks = num_codebooks

    def rank_manifest(self, rank: int) -> Path:
        return self.out / f"manifest.rank{rank}.jsonl"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        codec = pl_module.codec
        k = int(self.num_codebooks or codec.num_codebooks)
        model_id = str(getattr(codec, "model_id", getattr(codec, "name", "codec")))
        with open(self.rank_manifest(trainer.global_rank), "a") as f:
            for res in prediction:
                it = self.items[res["index"]]
                if res["error"] is not None or res["encoded"] is None:
                    row = {"status": "failed", "rel": it.rel, "source": it.source,
                           "reason": res["error"] or "no codes produced"}
                else:
                    enc: EncodedFile = res["encoded"]
                    meta = codes_meta(codec, enc.codes.shape[-1], enc.num_samples, it.source, enc.duration, k)
                    name = _codes_name(it.rel)
                    path = save_codes(self.out / name, enc.codes, meta)
                    row = {"status": "ok", "rel": it.rel, "source": it.source, "model_id": model_id,
                           "num_codebooks": k, "num_frames": int(enc.codes.shape[-1]), "duration": enc.duration,
                           "sample_rate": enc.sample_rate, "format": "npy", "codes": name,
                           "size": path.stat().st_size, "sha256": file_digest(path)}
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()


def merge_manifests(out_dir: str | os.PathLike, name: str = MANIFEST_NAME) -> Dict[str, Dict[str, Any]]:
    """Merge ``manifest.jsonl`` and every ``manifest.rank*.jsonl`` into ``manifest.jsonl`` (atomic).

    The latest record per item wins, except that an ``ok`` record is never replaced by a failure of the same
    item from another rank. The rank files are removed afterwards.
    """
    out = Path(out_dir)
    rows = _read_manifest(out / name)
    rank_files = sorted(out.glob("manifest.rank*.jsonl"))
    for p in rank_files:
        for rel, row in _read_manifest(p).items():
            if rows.get(rel, {}).get("status") == "ok" and row.get("status") != "ok" and \
                    rows[rel].get("source") == row.get("source"):
                continue
            rows[rel] = row
    data = "".join(json.dumps(rows[k], sort_keys=True) + "\n" for k in sorted(rows))
    atomic_write_bytes(out / name, data.encode())
    for p in rank_files:
        p.unlink()
    return rows


def tokenize_distributed(
    codec,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    num_codebooks: Optional[int] = None,
    batch_size: int = 8,
    channels: str = "downmix",
    accelerator: str = "auto",
    devices: Any = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    num_workers: int = 0,
    long_file_seconds: float = 60.0,
    chunk_seconds: float = 10.0,
    items: Optional[List[Item]] = None,
) -> Summary:
    """Tokenize with ``Trainer.predict`` across processes/GPUs/nodes; same outputs as ``tokenize``.

    Finished items (verified by size + sha256 in ``manifest.jsonl``) are skipped, so re-running resumes.
    """
    import time

    if num_codebooks is not None:
        codec.quantizer.check_num_codebooks(num_codebooks)
    k = int(num_codebooks or codec.num_codebooks)
    model_id = str(getattr(codec, "model_id", getattr(codec, "name", "codec")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items = collect_inputs(inputs) if items is None else items
    merged = merge_manifests(out)  # folds in rank files left by a killed run
    remove_stale_temps(out)
    cache: Dict[str, bool] = {}
    todo = [it for it in items if not (it.rel in merged and merged[it.rel].get("source") == it.source
                                       and is_verified(merged[it.rel], out, model_id, k, "npy", cache))]
    summary = Summary(out_dir=str(out), skipped=len(items) - len(todo))
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if todo:
        # sort by duration so padded batches waste little (headers only; bad files sort first)
        def dur(it: Item) -> float:
            try:
                return audio_info(it.source).duration if not it.error else -1.0
            except (AudioError, OSError):
                return -1.0

        todo.sort(key=dur)
        ds = FileDataset(todo, codec.sample_rate, channels, long_file_seconds)
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=_collate, num_workers=num_workers)
        module = TokenizeModule(codec, todo, num_codebooks, channels, long_file_seconds, chunk_seconds)
        trainer = Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                          callbacks=[CodesWriter(out, todo, num_codebooks)], logger=False, enable_progress_bar=False,
                          enable_checkpointing=False, enable_model_summary=False)
        with torch.no_grad():
            trainer.predict(module, dataloaders=loader, return_predictions=False)
        trainer.strategy.barrier()
        if trainer.global_rank != 0:
            summary.elapsed = time.perf_counter() - t0
            return summary
        merged = merge_manifests(out)
    for it in todo:
        row = merged.get(it.rel)
        if row is None or row.get("status") != "ok":
            summary.failed += 1
            summary.failures.append((it.source, row.get("reason", "missing from the rank manifests") if row else
                                     "missing from the rank manifests"))
        else:
            summary.written += 1
            summary.audio_seconds += float(row.get("duration", 0.0))
    summary.elapsed = time.perf_counter() - t0
    return summary
