"""The one scanner (files, folders, manifests), the one JSONL reader/writer, and that every consumer
(training data, tokenize, eval, separate) finds the same files - mp3 folders included."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.data.audio import AUDIO_EXTENSIONS, is_audio_path
from sonotok.data.dataset import AudioDataset, SpeakerBalancedSampler, scan_sources
from sonotok.data.sources import list_audio_files, read_jsonl, scan_audio, write_jsonl
from sonotok.errors import AudioError

SR = 16000


def _tone(seconds=1.0, f=220.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.fixture
def mp3_folder(tmp_path):
    d = tmp_path / "mp3s"
    (d / "sub").mkdir(parents=True)
    for i, rel in enumerate(("a.mp3", "sub/b.MP3", "sub/c.mp3")):
        sf.write(d / rel, _tone(1.2, 200 + 50 * i), SR, format="MP3")
    (d / "notes.txt").write_text("not audio")
    (d / ".partial.mp3.tmp").write_bytes(b"")  # a file being written: hidden, skipped
    return d


def test_one_extension_list():
    for ext in (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".au", ".w64", ".caf"):
        assert ext in AUDIO_EXTENSIONS, ext
    assert ".raw" not in AUDIO_EXTENSIONS and ".txt" not in AUDIO_EXTENSIONS
    assert is_audio_path("x/Y.MP3") and not is_audio_path("x/y.jsonl")


def test_train_data_on_an_mp3_folder(mp3_folder):
    """`train data.train=<mp3 folder>` finds the mp3 files (it found nothing before issue 13)."""
    files = [p.name for p in list_audio_files(mp3_folder)]
    assert files == ["a.mp3", "b.MP3", "c.mp3"]
    ds = AudioDataset(mp3_folder, SR, segment_seconds=0.5)
    assert len(ds) == 3 and ds[0].shape == (1, 8000)
    assert ds.total_seconds == pytest.approx(3.6, abs=0.1)

    from hydra.utils import instantiate

    from sonotok.training.train import compose_config

    cfg = compose_config(["data=folder", f"data.train={mp3_folder}", "data.num_workers=0"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    wav, lengths = next(iter(dm.train_dataloader()))
    assert len(dm.train_dataset) == 3 and wav.shape[1:] == (1, SR) and int(lengths[0]) == SR


def test_every_consumer_finds_the_same_files(mp3_folder, tmp_path):
    from sonotok.cli.separate import _expand
    from sonotok.evaluation.codec import find_audio
    from sonotok.tokenizer.inputs import collect_inputs

    sf.write(mp3_folder / "sub" / "d.wav", _tone(0.5), SR)
    want = [str(p) for p in list_audio_files(mp3_folder)]
    assert len(want) == 4
    assert [it.path for it in scan_sources(mp3_folder)] == want
    assert [it.source for it in collect_inputs([mp3_folder])] == want
    assert [it.rel for it in collect_inputs([mp3_folder])] == ["a.mp3", "sub/b.MP3", "sub/c.mp3", "sub/d.wav"]
    assert [r["path"] for r in find_audio(mp3_folder)] == want
    assert [str(p) for p in _expand([str(mp3_folder)])] == want


def test_manifests_are_read_once_the_same_way(tmp_path):
    sf.write(tmp_path / "x.wav", _tone(0.8), SR)
    m = tmp_path / "m.jsonl"
    write_jsonl(m, [{"path": "x.wav", "duration": 0.8, "speaker": "s1", "bandwidth": "wideband", "text": "hi"},
                    {"path": str(tmp_path / "x.wav"), "speaker": "s2"}])
    rows = read_jsonl(m)
    assert rows[0]["text"] == "hi" and not list(tmp_path.glob(".m.jsonl.*"))  # atomic: no temporary left
    entries = scan_audio(m)
    assert [e.path for e in entries] == [str(tmp_path / "x.wav")] * 2
    assert [e.rel for e in entries] == ["x.wav", "x.wav"] and entries[0].row["speaker"] == "s1"
    items = scan_sources(m)
    assert items[0].speaker == "s1" and items[0].bandwidth == "wideband" and items[0].text == "hi"
    assert items[1].duration == pytest.approx(0.8, abs=1e-3)  # no duration in the row: read from the header
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.wav"}\n{not json\n')
    with pytest.raises(AudioError, match=r"bad.jsonl: line 2: not valid JSON"):
        scan_audio(bad)
    report = scan_audio(bad, errors="report")
    assert report[0].error is None and "line 2" in report[1].error
    assert read_jsonl(bad, skip_bad=True) == [{"path": "x.wav"}]
    nopath = tmp_path / "nopath.jsonl"
    nopath.write_text('{"file": "x.wav"}\n')
    with pytest.raises(AudioError, match=r"nopath.jsonl: line 1: not a manifest row with a 'path' field"):
        scan_sources(nopath)
    with pytest.raises(AudioError, match="source not found"):
        scan_audio(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AudioError, match="unsupported source"):
        scan_audio(tmp_path / "notes.txt")


def test_bandwidth_filter_and_speaker_balance(tmp_path):
    rows = []
    for i in range(9):  # speaker "big" has 8 files, "small" one
        sf.write(tmp_path / f"f{i}.wav", _tone(1.0, 150 + 10 * i), SR)
        rows.append({"path": f"f{i}.wav", "duration": 1.0, "speaker": "big" if i < 8 else "small",
                     "bandwidth": "wideband"})
    sf.write(tmp_path / "nb.wav", _tone(1.0, 300, 8000), 8000)
    rows.append({"path": "nb.wav", "duration": 1.0, "speaker": "tel", "bandwidth": "narrowband"})
    m = tmp_path / "train.jsonl"
    write_jsonl(m, rows)
    assert len(AudioDataset(m, SR)) == 10
    ds = AudioDataset(m, SR, bandwidth="wideband")
    assert len(ds) == 9 and all(it.bandwidth == "wideband" for it in ds.items)
    s = SpeakerBalancedSampler(ds.items, num_samples=4000, seed=3)
    draws = list(s)
    assert all(e == 0 for _, e in draws)
    small = sum(ds.items[i].speaker == "small" for i, _ in draws) / len(draws)
    assert 0.45 < small < 0.55  # one file of nine, drawn half of the time
    s.set_epoch(1)
    assert [i for i, _ in s][:50] != [i for i, _ in draws][:50]
    again = list(SpeakerBalancedSampler(ds.items, num_samples=4000, seed=3))
    assert again == draws  # deterministic per seed and epoch
    by_time = list(SpeakerBalancedSampler(ds.items, num_samples=4000, seed=3, alpha=1.0))
    small = sum(ds.items[i].speaker == "small" for i, _ in by_time) / len(by_time)
    assert 0.08 < small < 0.15  # alpha=1: by hours, 1 s of 9


def test_datamodule_balance_bandwidth_and_augment(tmp_path):
    from sonotok.data.augment import Augmentation
    from sonotok.data.datamodule import AudioDataModule

    rows = []
    for i in range(4):
        sf.write(tmp_path / f"f{i}.wav", _tone(1.0, 150 + 30 * i), SR)
        rows.append({"path": f"f{i}.wav", "duration": 1.0, "speaker": f"s{i % 2}", "bandwidth": "wideband"})
    write_jsonl(tmp_path / "t.jsonl", rows)
    plain = AudioDataModule(tmp_path / "t.jsonl", batch_size=2, balance="speaker", bandwidth="wideband",
                            augment=Augmentation(), epoch_size=6)
    plain.setup("fit")
    assert plain.train_dataset.augment is None  # every effect off: no augmentation at all
    assert len(plain.train_dataloader().sampler) == 6
    noisy = AudioDataModule(tmp_path / "t.jsonl", batch_size=2, balance="speaker",
                            augment=Augmentation(noise_prob=1.0, snr_db=(10, 10), noise_kinds=("white",)))
    noisy.setup("fit")
    a, b = plain.train_dataset[(0, 0)], noisy.train_dataset[(0, 0)]
    snr = 10 * torch.log10(a.pow(2).mean() / (b - a).pow(2).mean())
    assert float(snr) == pytest.approx(10.0, abs=0.5)
    assert torch.equal(noisy.train_dataset[(0, 0)], b)  # seeded per (seed, epoch, index)
    with pytest.raises(ValueError, match="balance"):
        AudioDataModule(tmp_path / "t.jsonl", balance="file")


def test_corpus_config_composes_balanced_wideband():
    from sonotok.training.train import compose_config

    cfg = compose_config([])
    assert cfg.data.balance == "speaker" and cfg.data.bandwidth == "wideband"
    assert cfg.data.augment.reverb_prob == 0 and cfg.data.augment.noise_prob == 0
    cfg = compose_config(["data.augment.reverb_prob=0.5"])
    assert cfg.data.augment.reverb_prob == 0.5


def test_jsonl_writer_keeps_unicode(tmp_path):
    p = write_jsonl(tmp_path / "u.jsonl", [{"path": "a.wav", "text": "Občané ㄅㄚ"}])
    assert json.loads(p.read_text(encoding="utf-8"))["text"] == "Občané ㄅㄚ"
    assert "Občané" in p.read_text(encoding="utf-8")
