import argparse
import json
import os
from array import array
from pathlib import Path

import numpy as np
import pytest

from sonotok.cli.corpus import add_parser
from sonotok.data.audio import audio_info, load_audio
from sonotok.data.corpus import (
    SOUNDS_ROOT,
    CorpusError,
    build_corpus,
    is_pure_tone,
    read_manifest,
    segment_speech,
    speaker_id,
)

SR = 16000
FIELDS = {"path", "duration", "sample_rate", "bandwidth", "speaker", "language", "split", "source", "licence",
          "text", "synthetic", "origin"}
HELD = ("june", "ivrvoice_ru")  # the Asterisk-only corpus holds out speakers (it has no spare language)
AST = {"sources": ["asterisk"], "test_speakers": HELD}
HAVE_ASTERISK = all(
    (Path(SOUNDS_ROOT) / d).is_dir()
    for d in ("en_US_f_Allison", "es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
)


def _speechlike(seconds, seed, f0=(120.0, 230.0)):
    """Harmonic complex with a pitch glide and noise: not a pure tone, loud enough to be 'speech'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = np.linspace(f0[0], f0[1], t.size) + 15 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.15 + 0.02 * rng.standard_normal(t.size)
    return x * np.hanning(t.size) ** 0.2


def _silence(seconds):
    return np.zeros(int(seconds * SR))


def _write_g722(path, x):
    from G722 import G722

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = array("h", np.clip(x * 32767, -32768, 32767).astype(np.int16).tolist())
    path.write_bytes(bytes(G722(SR, 64000).encode(pcm)))


@pytest.fixture
def fake_sounds(tmp_path):
    pytest.importorskip("G722")
    root = tmp_path / "sounds"
    dirs = ["en_US_f_Allison", "es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"]
    for i, d in enumerate(dirs):
        for j in range(3):
            x = np.concatenate([_silence(0.3), _speechlike(1.2, 10 * i + j), _silence(0.3)])
            _write_g722(root / d / f"prompt-{j}.g722", x)
        # a long prompt with a long pause: two utterances
        x = np.concatenate([_speechlike(1.5, 100 + i), _silence(0.8), _speechlike(1.3, 200 + i)])
        _write_g722(root / d / "digits" / "long.g722", x)
        # non-speech that must be dropped
        t = np.arange(SR) / SR
        _write_g722(root / d / "beep.g722", 0.5 * np.sin(2 * np.pi * 1000 * t))
        _write_g722(root / d / "chime.g722", 0.5 * np.sin(2 * np.pi * 880 * t))
        _write_g722(root / d / "silence" / "1.g722", _silence(1.0))
    os.symlink(root / "en_US_f_Allison", root / "en")  # duplicate via symlink, as Debian ships it
    return root


def _check_corpus(out):
    rows = read_manifest(out / "manifest.jsonl")
    assert rows and all(set(r) == FIELDS for r in rows)
    by_split = {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert sum(len(v) for v in by_split.values()) == len(rows)
    spk = {s: {r["speaker"] for r in v} for s, v in by_split.items()}
    assert spk["train"].isdisjoint(spk["valid"] | spk["test"])
    assert all(len(v) > 0 for v in by_split.values())
    for r in rows:
        p = out / r["path"]
        assert not os.path.isabs(r["path"]) and p.is_file()
        info = audio_info(p)
        assert info.sample_rate == r["sample_rate"] == SR and info.subtype == "PCM_16"
        assert info.duration == pytest.approx(r["duration"], abs=1e-3)
        assert 0.5 <= r["duration"] <= 15.0
    return rows, spk


def test_build_on_synthetic_sources(fake_sounds, tmp_path):
    out = tmp_path / "corpus"
    summary = build_corpus(out, sounds_root=fake_sounds, min_train_seconds=5, verbose=False, **AST)
    rows, spk = _check_corpus(out)
    assert spk["train"] == {"allison", "carlo"}
    assert spk["valid"] | spk["test"] == {"june", "ivrvoice_ru"}
    names = {Path(r["path"]).stem for r in rows}
    assert not any(n.startswith(("beep", "chime")) for n in names), names  # name rule and tone detector
    assert not any("silence" in r["path"] for r in rows)
    assert {"long_00", "long_01"} <= names  # split at the long pause
    assert len([r for r in rows if r["speaker"] == "allison"]) == 10  # en + es, en symlink deduplicated
    assert summary["splits"]["train"]["utterances"] == 15
    # idempotent: same manifest, no rewrite of finished audio
    wav = out / rows[0]["path"]
    mtime = wav.stat().st_mtime_ns
    before = (out / "manifest.jsonl").read_text()
    build_corpus(out, sounds_root=fake_sounds, min_train_seconds=5, verbose=False, **AST)
    assert (out / "manifest.jsonl").read_text() == before
    assert wav.stat().st_mtime_ns == mtime


def test_configurable_held_out_speakers(fake_sounds, tmp_path):
    out = tmp_path / "c"
    build_corpus(out, sources=["asterisk"], sounds_root=fake_sounds, test_speakers=["carlo"], min_train_seconds=5,
                 verbose=False)
    _, spk = _check_corpus(out)
    assert spk["valid"] | spk["test"] == {"carlo"}
    with pytest.raises(CorpusError, match="not in this build"):
        build_corpus(tmp_path / "d", sources=["asterisk"], sounds_root=fake_sounds, test_speakers=["nobody"],
                     verbose=False)


def test_too_small_corpus_fails_without_limit(fake_sounds, tmp_path):
    with pytest.raises(CorpusError, match="asterisk-core-sounds-en-g722"):
        build_corpus(tmp_path / "c", sounds_root=fake_sounds, verbose=False, **AST)


def test_missing_sources_name_the_package(tmp_path):
    empty = tmp_path / "empty_sounds"
    empty.mkdir()
    with pytest.raises(CorpusError, match=r"apt-get install -y asterisk-core-sounds-en-g722"):
        build_corpus(tmp_path / "c", sounds_root=empty, verbose=False, **AST)
    with pytest.raises(CorpusError, match=r"asterisk-core-sounds-fr-g722"):
        build_corpus(tmp_path / "c", sources=["asterisk"], sounds_root=tmp_path / "does_not_exist", languages=["fr"],
                     verbose=False)
    assert not (tmp_path / "c" / "manifest.jsonl").exists()


def test_missing_language_names_its_package(fake_sounds, tmp_path):
    with pytest.raises(CorpusError, match=r"apt-get install -y asterisk-core-sounds-de-g722"):
        build_corpus(tmp_path / "c", sounds_root=fake_sounds, languages=["en", "de"], verbose=False, **AST)


def test_speaker_ids():
    assert speaker_id("en_US_f_Allison") == speaker_id("es_MX_f_Allison") == "allison"
    assert speaker_id("ru_RU_f_IvrvoiceRU") == "ivrvoice_ru"
    assert speaker_id("fr_CA_f_June") == "june"
    assert speaker_id("it_IT_m_Carlo") == "carlo"


def test_segmentation_and_tone_detection():
    x = np.concatenate(
        [_silence(0.5), _speechlike(1.2, 1), _silence(1.0), _speechlike(2.0, 2), _silence(0.2)]
    )
    segs = segment_speech(x, SR)
    assert len(segs) == 2
    (a0, b0), (a1, b1) = segs
    assert 0.3 * SR <= a0 <= 0.5 * SR and b0 <= a1
    assert b1 - a1 >= 2.0 * SR
    long = np.concatenate([_speechlike(9.0, 3), _speechlike(9.0, 4)])  # 18 s without a pause
    assert all(e - s <= 15 * SR for s, e in segment_speech(long, SR))
    assert segment_speech(_speechlike(0.3, 5), SR) == []  # too short
    t = np.arange(SR) / SR
    assert is_pure_tone(0.5 * np.sin(2 * np.pi * 1000 * t))
    dtmf = 0.3 * np.sin(2 * np.pi * 697 * t) + 0.3 * np.sin(2 * np.pi * 1209 * t)
    assert is_pure_tone(dtmf)
    assert not is_pure_tone(_speechlike(1.0, 6))


def test_cli_build_and_info(fake_sounds, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="sonotok")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "corpus",
            "build",
            "--out",
            str(out),
            "--sounds-root",
            str(fake_sounds),
            "--sources",
            "asterisk",
            "--limit-per-speaker",
            "3",
            "--test-speakers",
            "june,ivrvoice_ru",
        ]
    )
    assert args.func(args) == 0
    _check_corpus(out)
    args = parser.parse_args(["corpus", "info", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "train" in text and "allison" in text and " h " in text
    args = parser.parse_args(["corpus", "build", "--out", str(out), "--sounds-root", str(tmp_path / "none"),
                              "--sources", "asterisk", "--test-speakers", "june"])
    assert args.func(args) == 1
    assert "apt-get install -y" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_ASTERISK, reason="asterisk-core-sounds-*-g722 not installed")
def test_real_asterisk_subset(tmp_path):
    out = tmp_path / "real"
    build_corpus(out, limit_per_speaker=3, verbose=False, **AST)
    rows, spk = _check_corpus(out)
    assert spk["train"] == {"allison", "carlo"}
    assert spk["valid"] | spk["test"] == {"june", "ivrvoice_ru"}
    assert {r["language"] for r in rows} == {"en", "es", "fr", "it", "ru"}
    wav = load_audio(out / rows[0]["path"], None)
    assert wav.abs().max() > 0.05  # real speech, not silence
    line = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert line["split"] == "train" and line["source"].startswith("asterisk:")
    assert line["bandwidth"] == "wideband" and line["licence"] == "CC-BY-SA-3.0" and line["synthetic"] is False
    # transcripts from core-sounds-<lang>.txt (the asterisk-core-sounds-<lang> documentation)
    texts = {Path(r["path"]).stem: r["text"] for r in rows if r["speaker"] == "allison" and r["language"] == "en"}
    assert any(texts.values()), texts
