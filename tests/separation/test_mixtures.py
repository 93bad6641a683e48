from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.data.mixtures import (
    MixtureDataModule,
    MixtureDataset,
    MixtureError,
    MixtureFolderDataset,
    fixed_test_set,
)

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus"


def test_deterministic_and_mix_is_sum(fake_corpus):
    a = MixtureDataset(fake_corpus / "train.jsonl", 2, 8000, 1.0, length=8, seed=3, noise_prob=0.5)
    b = MixtureDataset(fake_corpus / "train.jsonl", 2, 8000, 1.0, length=8, seed=3, noise_prob=0.5)
    for i in range(4):
        x, y = a[(i, 0)], b[(i, 0)]
        assert torch.equal(x["mix"], y["mix"]) and torch.equal(x["sources"], y["sources"])
        assert x["sources"].shape == (2, 8000) and x["mix"].shape == (1, 8000)
        assert (x["mix"] - x["sources"].sum(0) - x["noise"]).abs().max() < 1e-6
        assert x["mix"].abs().max() <= 0.9 + 1e-6
    # training mixtures change with the epoch; fixed test sets do not
    assert a.describe(0, 0) != a.describe(0, 1)
    t = fixed_test_set(fake_corpus / "test.jsonl", 4, segment_seconds=1.0)
    assert t.describe(1, 0) == t.describe(1, 7)
    assert torch.equal(t[1]["mix"], fixed_test_set(fake_corpus / "test.jsonl", 4, segment_seconds=1.0)[1]["mix"])


def test_different_speakers_and_disjoint_splits(fake_corpus):
    tr = MixtureDataset(fake_corpus / "train.jsonl", 3, 8000, 1.0, length=20)
    te = fixed_test_set(fake_corpus / "test.jsonl", 20, segment_seconds=1.0)
    train_spk, test_spk = set(), set()
    for i in range(20):
        s = tr.describe(i)["speakers"]
        assert len(set(s)) == 3
        train_spk |= set(s)
        s = te.describe(i)["speakers"]
        assert len(set(s)) == 2
        test_spk |= set(s)
    assert train_spk == {"a", "b", "c"} and test_spk == {"x", "y"}
    with pytest.raises(MixtureError, match="3 different speakers"):
        MixtureDataset(fake_corpus / "test.jsonl", 3)


@pytest.mark.skipif(not (CORPUS / "test.jsonl").is_file(), reason="corpus not built")
def test_real_corpus_held_out_speakers():
    tr = MixtureDataset(CORPUS / "train.jsonl", 2, length=50)
    te = fixed_test_set(CORPUS / "test.jsonl", 50)
    train_spk = {s for i in range(50) for s in tr.describe(i)["speakers"]}
    test_spk = {s for i in range(50) for s in te.describe(i)["speakers"]}
    assert not train_spk & test_spk


def _tree(root: Path, names=("a.wav", "b.wav"), dirs=("mix", "s1", "s2"), sr=8000):
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        for n in names:
            sf.write(root / d / n, np.random.default_rng(0).standard_normal(800).astype(np.float32) * 0.1, sr)
    return root


def test_folder_reader(tmp_path):
    root = _tree(tmp_path / "Libri2Mix", dirs=("mix_clean", "s1", "s2", "noise"))
    ds = MixtureFolderDataset(root, 2, 8000)
    assert len(ds) == 2 and ds.mix_dir == "mix_clean"
    it = ds[0]
    assert it["mix"].shape == (1, 800) and it["sources"].shape == (2, 800)
    ds = MixtureFolderDataset(root, 2, 8000, segment_seconds=0.05, use_noise=True)
    assert ds[(1, 0)]["sources"].shape == (2, 400)
    dm = MixtureDataModule(str(root), str(root), batch_size=2, valid_size=1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["mix"].shape[0] == 2 and len(dm.val_dataloader()) == 1


def test_folder_reader_errors(tmp_path):
    with pytest.raises(MixtureError, match="no such folder"):
        MixtureFolderDataset(tmp_path / "nope")
    root = _tree(tmp_path / "wsj", dirs=("mix", "s1"))
    with pytest.raises(MixtureError, match=r"missing folder\(s\) s2/"):
        MixtureFolderDataset(root)
    with pytest.raises(MixtureError, match="missing mixture folder"):
        MixtureFolderDataset(_tree(tmp_path / "nomix", dirs=("s1", "s2")))
    root = _tree(tmp_path / "partial")
    (root / "s2" / "b.wav").unlink()
    with pytest.raises(MixtureError, match=r"s2/b\.wav: missing \(source of .*mix/b\.wav\)"):
        MixtureFolderDataset(root)
    with pytest.raises(MixtureError, match="noise/"):
        MixtureFolderDataset(_tree(tmp_path / "nonoise"), use_noise=True)


@pytest.mark.skipif(not list(Path("/usr/share/asterisk/moh").glob("*.g722")), reason="no Asterisk music")
def test_music_noise(fake_corpus):
    ds = MixtureDataset(fake_corpus / "train.jsonl", 2, 8000, 0.5, length=4, noise_prob=1.0, music_prob=1.0,
                        music_glob="/usr/share/asterisk/moh/macroform-cold_day.g722")
    r = ds.describe(0)
    assert r["noise"]["kind"] == "music"
    it = ds.render(r)
    assert it["noise"].abs().max() > 0 and (it["mix"] - it["sources"].sum(0) - it["noise"]).abs().max() < 1e-6
