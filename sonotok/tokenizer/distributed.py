"""Corpus tokenization on Lightning's distributed engine.

``Trainer.predict`` runs :class:`TokenizeModule` over a :class:`FileDataset` (Lightning shards it across
ranks with an unrepeated distributed sampler); :class:`CodesWriter` (a ``BasePredictionWriter``) writes
each rank's code files atomically and appends to that rank's own manifest ``manifest.rank{R}.jsonl``;
rank 0 merges them into ``manifest.jsonl`` (:func:`merge_manifests`).

Everything that touches shared state happens on rank 0 behind a barrier (:class:`RunData`): folding in
rank manifests left by a killed run, removing its temporary files, checking which items are finished and
sorting the rest by duration (one pass over the file headers, not one per rank); the other ranks receive
the list by broadcast. One run at a time per output folder (the launching process holds
:class:`~sonotok.tokenizer.manifest.RunLock`), deterministic encoding on every rank, the code variant in
every row, as :func:`sonotok.tokenizer.tokenize`. Works with DDP across GPUs and
nodes (``strategy="ddp"``, launched per node as usual) and on CPU with gloo (``ddp_spawn``), which the
tests use. Outputs are identical to :func:`sonotok.tokenizer.tokenize` (same layout, same codes).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from sonotok.data.audio import audio_info, load_audio
from sonotok.errors import AudioError, SonotokError
from sonotok.tokenizer.determinism import deterministic_encoding, device_variant, encoding_variant
from sonotok.tokenizer.formats import atomic_write_bytes, codes_meta, file_digest, save_codes
from sonotok.tokenizer.inputs import Item, collect_inputs
from sonotok.tokenizer.manifest import (
    MANIFEST_NAME,
    RunLock,
    Summary,
    _codes_name,
    _one_line,
    _read_manifest,
    file_stamp,
    is_verified,
    remove_stale_temps,
    same_source,
    source_key,
)
from sonotok.tokenizer.ops import EncodedFile, encode_batch, encode_file_info
from sonotok.tokenizer.runner import run_settings

__all__ = ["FileDataset", "RunData", "TokenizeModule", "CodesWriter", "merge_manifests", "prepare_run",
           "tokenize_distributed"]


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

    def __init__(self, codec, items: Optional[Sequence[Item]] = None, num_codebooks: Optional[int] = None,
                 channels: str = "downmix", long_file_seconds: float = 60.0, chunk_seconds: float = 10.0):
        super().__init__()
        self.codec = codec
        self.items = None if items is None else list(items)  # None: the RunData's list
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

    def _item(self, index: int) -> Item:
        return (self.items if self.items is not None else self.trainer.datamodule.todo)[index]

    def on_predict_start(self) -> None:  # on every rank, in the process that encodes
        self._deterministic = contextlib.ExitStack()
        self._deterministic.enter_context(deterministic_encoding())

    def on_predict_end(self) -> None:
        stack = getattr(self, "_deterministic", None)
        if stack is not None:
            stack.close()

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
                    res["encoded"] = encode_file_info(self.codec, self._item(b["index"]).source, self.num_codebooks,
                                                      self.channels, self.long_file_seconds, self.chunk_seconds)
                except (SonotokError, OSError, ValueError) as e:  # one file fails, the run goes on
                    res["error"] = _one_line(e)
            out.append(res)
        return out


class CodesWriter(BasePredictionWriter):
    """Writes each rank's codes (atomic ``.npy`` + ``.json``) and its own ``manifest.rank{R}.jsonl``."""

    def __init__(self, out_dir: str | os.PathLike, items: Optional[Sequence[Item]] = None,
                 num_codebooks: Optional[int] = None, run_id: Optional[str] = None):
        super().__init__(write_interval="batch")
        self.out = Path(out_dir)
        self.items = None if items is None else list(items)  # None: the RunData's list
        self.num_codebooks = num_codebooks
        self.run_id = run_id

    def rank_manifest(self, rank: int) -> Path:
        return self.out / f"manifest.rank{rank}.jsonl"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        codec = pl_module.codec
        k = int(self.num_codebooks or codec.num_codebooks)
        model_id = str(getattr(codec, "model_id", getattr(codec, "name", "codec")))
        data = getattr(trainer, "datamodule", None)
        items = self.items if self.items is not None else data.todo
        run_id = self.run_id if self.run_id is not None else getattr(data, "run_id", None)
        variant = encoding_variant(codec)
        with open(self.rank_manifest(trainer.global_rank), "a") as f:
            for res in prediction:
                it = items[res["index"]]
                if res["error"] is not None or res["encoded"] is None:
                    row = {"status": "failed", "rel": it.rel, "source": it.source,
                           "reason": res["error"] or "no codes produced", "run": run_id}
                else:
                    enc: EncodedFile = res["encoded"]
                    meta = codes_meta(codec, enc.codes.shape[-1], enc.num_samples, it.source, enc.duration, k)
                    name = _codes_name(it.rel)
                    path = save_codes(self.out / name, enc.codes, meta)
                    row = {"status": "ok", "rel": it.rel, "source": it.source, "source_key": source_key(it.source),
                           "model_id": model_id, "num_codebooks": k, "num_frames": int(enc.codes.shape[-1]),
                           "duration": enc.duration, "sample_rate": enc.sample_rate, "format": "npy",
                           "codes": name, **file_stamp(path), "sha256": file_digest(path), "run": run_id,
                           **variant}
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()


def merge_manifests(out_dir: str | os.PathLike, name: str = MANIFEST_NAME) -> Dict[str, Dict[str, Any]]:
    """Merge ``manifest.jsonl`` and every ``manifest.rank*.jsonl`` into ``manifest.jsonl`` (atomic).

    The latest record per item wins, except that an ``ok`` record is never replaced by a failure of the same
    item from another rank. The rank files are removed afterwards. Call it on rank 0 only (it unlinks files
    the other ranks may be appending to).
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


def _pending(items: Sequence[Item], rows: Dict[str, Dict[str, Any]], out: Path, model_id: str, k: int,
             variant: Optional[Dict[str, str]], verify: str) -> List[Item]:
    cache: Dict[str, bool] = {}
    return [it for it in items if not (it.rel in rows and same_source(rows[it.rel], it.source)
                                       and is_verified(rows[it.rel], out, model_id, k, "npy", cache, variant, verify))]


def _duration(it: Item) -> float:
    try:
        return audio_info(it.source).duration if not it.error else -1.0
    except (AudioError, OSError):
        return -1.0


def prepare_run(out: Path, items: Sequence[Item], model_id: str, k: int, variant: Optional[Dict[str, str]],
                verify: str = "stamp") -> List[Item]:
    """Rank 0's part before encoding: fold in rank manifests left by a killed run, remove its temporary files,
    and return the items still to encode (not finished and intact for this model, bitrate and code variant),
    sorted by duration so padded batches waste little (bad files first)."""
    merged = merge_manifests(out)
    remove_stale_temps(out)
    todo = _pending(items, merged, out, model_id, k, variant, verify)
    todo.sort(key=_duration)
    return todo


class RunData(LightningDataModule):
    """The items still to encode: decided on rank 0 (:func:`prepare_run`) behind a barrier, broadcast to the
    other ranks, and served to ``Trainer.predict`` as :class:`FileDataset` batches.

    ``run_id`` (rank 0's) is recorded in every manifest row of this run, which is how the launching process
    counts what the run wrote.
    """

    def __init__(self, out: str | os.PathLike, items: Sequence[Item], model_id: str, num_codebooks: int,
                 sample_rate: int, batch_size: int = 8, channels: str = "downmix", long_file_seconds: float = 60.0,
                 num_workers: int = 0, verify: str = "stamp", run_id: Optional[str] = None):
        super().__init__()
        self.out = Path(out)
        self.items = list(items)
        self.model_id = model_id
        self.num_codebooks = int(num_codebooks)
        self.sample_rate = int(sample_rate)
        self.batch_size = int(batch_size)
        self.channels = channels
        self.long_file_seconds = float(long_file_seconds)
        self.num_workers = int(num_workers)
        self.verify = verify
        self.run_id = run_id or uuid.uuid4().hex
        self.todo: Optional[List[Item]] = None

    def expected_variant(self) -> Optional[Dict[str, str]]:
        """The code variant this run's ranks produce (device of the strategy, the model's dtype)."""
        module = self.trainer.lightning_module
        p = next(module.parameters(), None) if module is not None else None
        return device_variant(self.trainer.strategy.root_device, p.dtype if p is not None else torch.float32)

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        todo = None
        if self.trainer.is_global_zero:
            todo = prepare_run(self.out, self.items, self.model_id, self.num_codebooks, self.expected_variant(),
                               self.verify)
        self.todo, self.run_id = strategy.broadcast((todo, self.run_id), src=0)
        strategy.barrier("sonotok_tokenize_prepared")

    def predict_dataloader(self) -> DataLoader:
        ds = FileDataset(self.todo, self.sample_rate, self.channels, self.long_file_seconds)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, collate_fn=_collate,
                          num_workers=self.num_workers)


def _launching_rank_zero() -> bool:
    """Whether this process is global rank 0 of a launch (or not part of one): the one that locks ``out``."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) == "0"


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
    verify: str = "stamp",
    lock_timeout: Optional[float] = 0.0,
) -> Summary:
    """Tokenize with ``Trainer.predict`` across processes/GPUs/nodes; same outputs as ``tokenize``.

    Finished items (size + modification time, or sha256 with ``verify="sha256"``, as in ``manifest.jsonl``)
    are skipped, so re-running resumes. ``lock_timeout`` as in :func:`sonotok.tokenizer.tokenize`.
    """
    k, model_id, batch_size = run_settings(codec, num_codebooks, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, lock_timeout) if _launching_rank_zero() else contextlib.nullcontext()
    with lock:
        return _tokenize_distributed(codec, inputs, out, num_codebooks, k, model_id, batch_size, channels, accelerator,
                                     devices, num_nodes, strategy, num_workers, long_file_seconds, chunk_seconds,
                                     items, verify)


def _tokenize_distributed(codec, inputs, out: Path, num_codebooks, k: int, model_id: str, batch_size: int,
                          channels: str, accelerator, devices, num_nodes: int, strategy, num_workers: int,
                          long_file_seconds: float, chunk_seconds: float, items, verify: str) -> Summary:
    t0 = time.perf_counter()
    items = collect_inputs(inputs) if items is None else items
    # read-only look (every process, nothing is written or removed): is there anything to do at all?
    rows = _read_manifest(out / MANIFEST_NAME)
    for p in sorted(out.glob("manifest.rank*.jsonl")):
        rows.update(_read_manifest(p))
    summary = Summary(out_dir=str(out))
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    p = next(codec.parameters(), None)
    variant = device_variant("cuda" if gpu else "cpu", p.dtype if p is not None else torch.float32)
    if not _pending(items, rows, out, model_id, k, variant, verify) and not list(out.glob("manifest.rank*.jsonl")):
        summary.skipped = len(items)
        summary.elapsed = time.perf_counter() - t0
        return summary
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    data = RunData(out, items, model_id, k, codec.sample_rate, batch_size, channels, long_file_seconds, num_workers,
                   verify)
    module = TokenizeModule(codec, None, num_codebooks, channels, long_file_seconds, chunk_seconds)
    trainer = Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                      callbacks=[CodesWriter(out, None, num_codebooks)], logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False)
    with torch.no_grad():
        trainer.predict(module, datamodule=data, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        summary.elapsed = time.perf_counter() - t0
        return summary
    merged = merge_manifests(out)
    for it in items:
        row = merged.get(it.rel)
        if row is not None and row.get("run") == data.run_id:
            if row.get("status") == "ok":
                summary.written += 1
                summary.audio_seconds += float(row.get("duration", 0.0))
            else:
                summary.failed += 1
                summary.failures.append((it.source, row.get("reason", "failed")))
        elif row is not None and row.get("status") == "ok" and same_source(row, it.source):
            summary.skipped += 1
        else:
            summary.failed += 1
            summary.failures.append((it.source, "missing from the rank manifests"))
    summary.elapsed = time.perf_counter() - t0
    return summary
