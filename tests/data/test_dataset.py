import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from sonotok.data.datamodule import AudioDataModule
from sonotok.data.dataset import AudioDataset, EpochSampler, collate_pad, scan_sources
from sonotok.errors import AudioError


def _write(path, seconds, sr=16000, channels=1, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (int(seconds * sr), channels)).astype(np.float32)
    sf.write(path, x, sr, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "audio"
    _write(root / "a.wav", 0.5, seed=1)
    _write(root / "sub" / "b.flac", 0.3, sr=22050, seed=2)
    _write(root / "sub" / "deeper" / "c.ogg", 0.4, sr=8000, seed=3)
    _write(root / "short.wav", 0.1, channels=2, seed=4)
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_scan_and_crops(folder):
    ds = AudioDataset(folder, 16000, segment_seconds=0.2, seed=0)
    assert len(ds) == 4
    assert {p.split("/")[-1] for p in (it.path for it in ds.items)} == {
        "a.wav",
        "b.flac",
        "c.ogg",
        "short.wav",
    }
    for i in range(len(ds)):
        w = ds[i]
        assert w.shape == (1, 3200) and w.dtype == torch.float32
    short = ds[[it.path.endswith("short.wav") for it in ds.items].index(True)]
    assert short[:, 1700:].abs().max() == 0  # zero-padded
    assert short[:, :1500].abs().max() > 0


def test_crops_deterministic_per_seed_epoch_index(folder):
    ds = AudioDataset(folder, 16000, segment_seconds=0.1, seed=7)
    ds2 = AudioDataset(folder, 16000, segment_seconds=0.1, seed=7)
    assert torch.equal(ds[(0, 3)], ds2[(0, 3)])
    ds2.set_epoch(3)
    assert torch.equal(ds[(0, 3)], ds2[0])
    different = [not torch.equal(ds[(0, e)], ds[(0, 0)]) for e in range(1, 6)]
    assert any(different)
    ds3 = AudioDataset(folder, 16000, segment_seconds=0.1, seed=8)
    assert any(not torch.equal(ds[(0, e)], ds3[(0, e)]) for e in range(4))


def test_whole_files_and_collate(folder):
    ds = AudioDataset(folder, 16000, segment_seconds=None, random_crop=False)
    lens = sorted(ds[i].shape[-1] for i in range(len(ds)))
    assert lens == [1600, 4800, 6400, 8000]
    wav, lengths = collate_pad([ds[i] for i in range(len(ds))])
    assert wav.shape == (4, 1, 8000) and lengths.dtype == torch.long
    for k in range(4):
        assert wav[k, :, lengths[k] :].abs().sum() == 0
    capped = AudioDataset(folder, 16000, segment_seconds=None, max_seconds=0.2)
    assert max(capped[i].shape[-1] for i in range(len(capped))) == 3200


def test_min_seconds_and_channels(folder):
    ds = AudioDataset(folder, 16000, segment_seconds=0.1, min_seconds=0.2)
    assert len(ds) == 3
    keep = AudioDataset(folder / "short.wav", 16000, segment_seconds=0.05, channels="keep")
    assert keep[0].shape == (2, 800)
    rej = AudioDataset(folder / "short.wav", 16000, channels="reject")
    with pytest.raises(AudioError, match="short.wav.*channel"):
        rej[0]


def test_manifest_relative_paths_and_split(tmp_path):
    root = tmp_path / "corpus"
    _write(root / "wavs" / "x.wav", 0.5, seed=5)
    _write(root / "wavs" / "y.wav", 0.3, seed=6)
    rows = [
        {
            "path": "wavs/x.wav",
            "duration": 0.5,
            "sample_rate": 16000,
            "speaker": "s1",
            "language": "en",
            "split": "train",
        },
        {
            "path": "wavs/y.wav",
            "duration": 0.3,
            "sample_rate": 16000,
            "speaker": "s2",
            "language": "en",
            "split": "valid",
        },
    ]
    m = root / "manifest.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = AudioDataset(m, 16000, segment_seconds=0.25)
    assert len(ds) == 2 and ds[1].shape == (1, 4000)
    train = AudioDataset(m, 16000, segment_seconds=0.25, split="train")
    assert len(train) == 1 and train.items[0].speaker == "s1"
    both = AudioDataset([m, root / "wavs"], 16000, segment_seconds=0.1)
    assert len(both) == 4


def test_bad_files_name_the_file(tmp_path):
    root = tmp_path / "bad"
    _write(root / "good.wav", 0.2)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00")
    with pytest.raises(AudioError, match="broken.wav"):
        AudioDataset(root, 16000)
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"path": "missing.wav", "duration": 1.0}) + "\n")
    ds = AudioDataset(m, 16000)
    with pytest.raises(AudioError, match="missing.wav.*not found"):
        ds[0]
    with pytest.raises(AudioError, match="nowhere"):
        scan_sources(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        AudioDataset(tmp_path / "empty", 16000)


def test_sampler_and_loader(folder):
    ds = AudioDataset(folder, 16000, segment_seconds=0.1)
    sampler = EpochSampler(len(ds), seed=0)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(4)) and {e for _, e in first} == {0}
    sampler.set_epoch(1)
    assert {e for _, e in sampler} == {1}
    loader = DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_pad)
    wav, lengths = next(iter(loader))
    assert wav.shape == (2, 1, 1600) and lengths.tolist() == [1600, 1600]


def test_datamodule(folder):
    dm = AudioDataModule(
        folder, folder, sample_rate=16000, segment_seconds=0.1, batch_size=3, valid_max_seconds=0.25
    )
    dm.setup("fit")
    wav, lengths = next(iter(dm.train_dataloader()))
    assert wav.shape == (3, 1, 1600)
    assert len(dm.train_dataloader()) == 1  # drop_last with 4 files, batch 3
    vals = list(dm.val_dataloader())
    assert len(vals) == 4 and all(w.shape[0] == 1 and w.shape[-1] <= 4000 for w, _ in vals)


def test_hydra_configs_instantiate(folder, monkeypatch, tmp_path):
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "sonotok" / "conf" / "data"

    def load(name):  # the data group lives in a tree that defines the shared sample_rate
        return OmegaConf.create({"sample_rate": 16000, "data": OmegaConf.load(conf / name)}).data

    cfg = load("folder.yaml")
    cfg.train = str(folder)
    cfg.num_workers = 0
    dm = instantiate(cfg)
    assert isinstance(dm, AudioDataModule)
    dm.setup("fit")
    assert len(dm.train_dataset) == 4
    monkeypatch.setenv("SONOTOK_CORPUS", str(tmp_path / "corpus"))
    cfg = load("corpus.yaml")
    assert cfg.train == str(tmp_path / "corpus" / "train.jsonl")
    assert cfg.valid.endswith("valid.jsonl") and cfg.sample_rate == 16000 and cfg.batch_size == 8
    assert isinstance(instantiate(cfg), AudioDataModule)  # lazy: files are read in setup()
