"""LightningDataModule over :class:`~sonotok.data.dataset.AudioDataset`: random fixed-length crops for
training, whole files (capped at ``valid_max_seconds``) for validation."""

from __future__ import annotations

import os
from typing import Sequence

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from sonotok.data.dataset import AudioDataset, EpochSampler, SpeakerBalancedSampler, collate_pad
from sonotok.data.loader import ResumableDataLoader

Sources = str | os.PathLike | Sequence[str | os.PathLike]

__all__ = ["AudioDataModule"]


class AudioDataModule(pl.LightningDataModule):
    """Train/valid audio loaders.

    Args:
        train: folder(s) or JSONL manifest(s) for training (see :class:`AudioDataset`).
        valid: the same for validation, or ``None`` for no validation loader.
        sample_rate: output sample rate.
        segment_seconds: training crop length.
        batch_size: training batch size.
        num_workers: loader worker processes.
        channels: channel policy (``"downmix"``, ``"reject"``, ``"first"``, ``"keep"``).
        valid_max_seconds: validation files are truncated to this length.
        valid_batch_size: validation batch size (files are zero-padded; lengths are returned).
        seed: crop and order seed.
        min_seconds: skip training files shorter than this.
        train_split / valid_split: keep only manifest rows with this ``split`` (``None``: all rows).
        pin_memory: pin host memory (useful on CUDA).
        balance: ``"speaker"``: training crops drawn so every speaker is equally likely
            (:class:`~sonotok.data.dataset.SpeakerBalancedSampler`); ``None``: every file once per epoch.
        bandwidth: keep only manifest rows with this ``bandwidth`` (the corpus config keeps ``"wideband"``).
        augment: training-crop augmentation (:class:`~sonotok.data.augment.Augmentation`; ``None``: off).
        epoch_size: crops per epoch with ``balance="speaker"`` (default: the number of training files).
        balance_alpha: with ``balance="speaker"``, speaker probability proportional to ``seconds ** alpha``
            (0: all speakers alike; 1: by hours).

    Batches are ``(wav [B, C, T], lengths [B])``; training crops all have ``T = segment_seconds * sample_rate``.
    """

    def __init__(
        self,
        train: Sources,
        valid: Sources | None = None,
        sample_rate: int = 16000,
        segment_seconds: float = 1.0,
        batch_size: int = 8,
        num_workers: int = 0,
        channels: str = "downmix",
        valid_max_seconds: float | None = 10.0,
        valid_batch_size: int = 1,
        seed: int = 0,
        min_seconds: float | None = None,
        train_split: str | None = None,
        valid_split: str | None = None,
        pin_memory: bool = False,
        balance: str | None = None,
        bandwidth: str | None = None,
        augment=None,
        epoch_size: int | None = None,
        balance_alpha: float = 0.0,
    ):
        super().__init__()
        if balance not in (None, "speaker"):
            raise ValueError(f"balance must be None or 'speaker', got {balance!r}")
        self.balance = balance
        self.bandwidth = bandwidth
        self.augment = augment
        self.epoch_size = epoch_size
        self.balance_alpha = float(balance_alpha)
        self.train_sources = train
        self.valid_sources = valid
        self.sample_rate = int(sample_rate)
        self.segment_seconds = segment_seconds
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.channels = channels
        self.valid_max_seconds = valid_max_seconds
        self.valid_batch_size = valid_batch_size
        self.seed = seed
        self.min_seconds = min_seconds
        self.train_split = train_split
        self.valid_split = valid_split
        self.pin_memory = pin_memory
        self.train_dataset: AudioDataset | None = None
        self.valid_dataset: AudioDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None and stage in (None, "fit"):
            self.train_dataset = AudioDataset(
                self.train_sources,
                self.sample_rate,
                segment_seconds=self.segment_seconds,
                channels=self.channels,
                split=self.train_split,
                random_crop=True,
                seed=self.seed,
                min_seconds=self.min_seconds,
                bandwidth=self.bandwidth,
                augment=self.augment if getattr(self.augment, "enabled", True) else None,
            )
        if (
            self.valid_dataset is None
            and self.valid_sources is not None
            and stage in (None, "fit", "validate")
        ):
            self.valid_dataset = AudioDataset(
                self.valid_sources,
                self.sample_rate,
                segment_seconds=None,
                channels=self.channels,
                split=self.valid_split,
                random_crop=False,
                max_seconds=self.valid_max_seconds,
                bandwidth=self.bandwidth,
            )

    def _loader(self, ds, batch_size, sampler, drop_last):
        return ResumableDataLoader(  # resumes mid-epoch from a checkpoint (sonotok.data.loader)
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_pad,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        ds = self.train_dataset
        if self.balance == "speaker":
            sampler = SpeakerBalancedSampler(ds.items, self.epoch_size, seed=self.seed, alpha=self.balance_alpha)
        else:
            sampler = EpochSampler(len(ds), shuffle=True, seed=self.seed)
        drop_last = len(sampler) >= self.batch_size
        return self._loader(ds, self.batch_size, sampler, drop_last)

    def val_dataloader(self) -> DataLoader | list:
        if self.valid_sources is None:
            return []
        if self.valid_dataset is None:
            self.setup("validate")
        ds = self.valid_dataset
        return self._loader(ds, self.valid_batch_size, EpochSampler(len(ds), shuffle=False), False)
