"""The multi-source corpus: fake package trees (bad inputs, de-duplication, bandwidth, language splits,
joining, mixtures) and a small build from real Debian packages fetched once into the cache."""

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sonotok.cli.corpus import add_parser
from sonotok.data.audio import audio_info, load_audio
from sonotok.data.corpus import CorpusError, build_corpus, read_manifest, transcribed_utterances
from sonotok.data.corpus.debian import PackageFetchError, default_cache_dir, fetch_packages
from sonotok.data.corpus.manifest import FIELDS
from sonotok.data.corpus.mixtures import write_mixture_set
from sonotok.data.corpus.packages import read_festvox_transcripts, read_fillets_dialogs
from sonotok.data.corpus.sources import read_asterisk_transcripts
from sonotok.data.mixtures import MixtureFolderDataset


def _speech(seconds, sr, seed, f0=(110.0, 210.0)):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = np.linspace(*f0, t.size) + 20 * np.sin(2 * np.pi * 4 * t)
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 10)) * 0.2 + 0.02 * rng.standard_normal(t.size)
    return (x * np.hanning(t.size) ** 0.3).astype(np.float32)


def _stamp(root: Path, name: str) -> Path:
    """A package tree in a fake cache, marked as completely unpacked (no .deb: never fetched)."""
    pkg = root / "root" / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / ".complete").write_text("fake\n")
    return pkg


@pytest.fixture
def fake_cache(tmp_path):
    """ktuberling-data and klettres-data trees: words of several languages, with bad and repeated files."""
    cache = tmp_path / "cache"
    kt = _stamp(cache, "ktuberling-data") / "usr/share/ktuberling/sounds"
    langs = {"de": 44100, "fr": 22050, "bg": 44100, "el": 44100, "ca": 44100, "sv": 8000}
    for i, (lang, sr) in enumerate(langs.items()):
        d = kt / lang
        d.mkdir(parents=True)
        for j in range(6):
            x = np.concatenate([np.zeros(int(0.2 * sr), np.float32), _speech(0.7, sr, 10 * i + j), np.zeros(int(0.2 * sr), np.float32)])
            stereo = np.stack([x, 0.9 * x], axis=1)  # stereo: downmixed
            sf.write(d / f"word{j}.{'wav' if sr == 8000 else 'ogg'}", stereo if sr != 8000 else x, sr)
    # repeated files (the packages ship the same folder under several names): kept once
    shutil.copytree(kt / "de", kt / "de@dup")
    # bad inputs: each skipped with its reason
    (kt / "fr" / "broken.ogg").write_bytes(b"OggS" + os.urandom(400))
    sf.write(kt / "fr" / "empty.wav", np.zeros((0, 1), np.float32), 22050)
    sf.write(kt / "fr" / "wrongrate.wav", _speech(0.5, 1000, 99), 1000)
    kl = _stamp(cache, "klettres-data") / "usr/share/klettres"
    for i, lang in enumerate(("de", "bg")):
        d = kl / lang / "alpha"
        d.mkdir(parents=True)
        for j in range(5):
            sf.write(d / f"{chr(97 + j)}.ogg", _speech(0.6, 44100, 500 + 10 * i + j, (150.0, 260.0)), 44100)
    return cache


KW = {"sources": ["klettres", "ktuberling"], "valid_languages": ["ca"], "test_languages": ["bg", "el"]}


def test_build_from_package_trees(fake_cache, tmp_path):
    out = tmp_path / "corpus"
    summary = build_corpus(out, cache_dir=fake_cache, verbose=False, **KW)
    rows = read_manifest(out / "manifest.jsonl")
    assert rows and all(set(r) == set(FIELDS) for r in rows)
    by_split = {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert sum(map(len, by_split.values())) == len(rows)
    langs = {s: {r["language"] for r in v} for s, v in by_split.items()}
    spk = {s: {r["speaker"] for r in v} for s, v in by_split.items()}
    assert langs["test"] == {"bg", "el"} and langs["valid"] == {"ca"}
    assert langs["train"] == {"de", "fr", "sv"}  # whole languages held out, across both packages
    assert spk["train"].isdisjoint(spk["valid"] | spk["test"])
    assert {"klettres_bg", "ktuberling_bg", "ktuberling_el"} == spk["test"]
    # de-duplication: the copied folder adds nothing
    assert "ktuberling_de_dup" not in {r["speaker"] for r in rows}
    log = (out / "build.log").read_text()
    assert "6 repeated source files dropped" in log
    # bad inputs are skipped with the file and the reason in the log
    for name, reason in (("broken.ogg", "corrupt"), ("empty.wav", "zero-length"), ("wrongrate.wav", "sample rate 1000")):
        line = next(ln for ln in log.splitlines() if name in ln)
        assert "skip" in line and reason in line, line
    # bandwidth: the 8 kHz words stay 8 kHz and are tagged; the others are 16 kHz wideband
    for r in rows:
        info = audio_info(out / r["path"])
        assert info.sample_rate == r["sample_rate"] and info.channels == 1 and info.subtype == "PCM_16"
        assert info.duration == pytest.approx(r["duration"], abs=1e-3)
        if r["language"] == "sv":
            assert r["bandwidth"] == "narrowband" and r["sample_rate"] == 8000
        else:
            assert r["bandwidth"] == "wideband" and r["sample_rate"] == 16000
        assert r["licence"] == "GPL-2+" and r["synthetic"] is False
    # short words of one speaker are joined into 2-6 s utterances (a leftover may be shorter)
    de = [r for r in rows if r["speaker"] == "ktuberling_de"]
    assert max(len(r["origin"]) for r in de) >= 2 and sum(len(r["origin"]) for r in de) == 6
    assert all(r["duration"] <= 6.0 + 1e-6 for r in rows)
    assert max(r["duration"] for r in de) >= 2.0
    # loudness-normalised: peaks below -1 dBFS, real level
    peaks = [float(load_audio(out / r["path"]).abs().max()) for r in rows]
    assert max(peaks) <= 0.9 and min(peaks) > 0.05
    assert summary["splits"]["test"]["speakers"] == 3
    # incremental: adding nothing redoes nothing, the manifest is identical
    before = (out / "manifest.jsonl").read_text()
    mtime = (out / rows[0]["path"]).stat().st_mtime_ns
    build_corpus(out, cache_dir=fake_cache, verbose=False, **KW)
    assert (out / "manifest.jsonl").read_text() == before
    assert (out / rows[0]["path"]).stat().st_mtime_ns == mtime
    relog = (out / "build.log").read_text()
    assert "cached" in relog and "broken.ogg: corrupt" in relog  # skip reasons survive a cached rebuild
    notice = (out / "NOTICE.txt").read_text()
    assert "KTuberling" in notice and "KLettres" in notice and "GPL-2+" in notice


def test_sources_subset_and_incremental(fake_cache, tmp_path):
    out = tmp_path / "c"
    build_corpus(out, cache_dir=fake_cache, verbose=False, **{**KW, "sources": ["ktuberling"]})
    assert {r["source"].split(":")[0] for r in read_manifest(out / "manifest.jsonl")} == {"ktuberling"}
    parts = {p.name: p.stat().st_mtime_ns for p in (out / ".parts").iterdir()}
    build_corpus(out, cache_dir=fake_cache, verbose=False, **KW)  # add klettres: ktuberling is not redone
    assert {r["source"].split(":")[0] for r in read_manifest(out / "manifest.jsonl")} == {"ktuberling", "klettres"}
    after = {p.name: p.stat().st_mtime_ns for p in (out / ".parts").iterdir()}
    assert all(after[n] == t for n, t in parts.items())
    with pytest.raises(CorpusError, match="unknown corpus sources"):
        build_corpus(out, cache_dir=fake_cache, verbose=False, sources=["nope"])
    with pytest.raises(CorpusError, match="split 'valid' is empty"):
        build_corpus(tmp_path / "d", cache_dir=fake_cache, verbose=False, sources=["klettres"],
                     valid_languages=["xx"], test_languages=["bg"])


def test_missing_package_is_named_never_a_smaller_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))  # no apt-get: the archive cannot be reached
    with pytest.raises(PackageFetchError) as e:
        build_corpus(tmp_path / "c", cache_dir=tmp_path / "cache", sources=["gcin-voice", "klettres"], verbose=False)
    msg = str(e.value)
    assert "gcin-voice" in msg and "klettres-data" in msg and "apt-get download klettres-data gcin-voice" in msg
    assert not (tmp_path / "c" / "manifest.jsonl").exists()


def test_transcript_readers(tmp_path):
    p = tmp_path / "core-sounds-en.txt.gz"
    p.write_bytes(gzip.compress(b"; Core Asterisk Sounds\n\nbeep: [this is a simple beep tone]\n"
                                b"digits/1: one\nvm-goodbye: Goodbye.\n"))
    assert read_asterisk_transcripts(p) == {"digits/1": "one", "vm-goodbye": "Goodbye."}
    lua = tmp_path / "dialogs_cs.lua"
    lua.write_text('\ndialogId("vit-hs-klid1", "font_statue", "Citizens, please remain calm.")\n'
                   'dialogStr("Občané. Zachovejte klid.")\n\ndialogId("x-m-a", "font_small", "Hi")\n'
                   'dialogStr("Ahoj \\"rybko\\"")\n', encoding="utf-8")
    assert read_fillets_dialogs(lua) == {"vit-hs-klid1": ("font_statue", "Občané. Zachovejte klid."),
                                         "x-m-a": ("font_small", 'Ahoj "rybko"')}
    txt = tmp_path / "txt.done.data"
    txt.write_text('( ru_0001 "Она завела, прядь вол+ос." )\n( ru_0002 "Да." )\n', encoding="utf-8")
    assert read_festvox_transcripts(txt) == {"ru_0001": "Она завела, прядь волос.", "ru_0002": "Да."}


def test_mixture_sets_from_one_split(fake_cache, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(out, cache_dir=fake_cache, verbose=False, **{**KW, "test_languages": ["bg", "el", "fr"]})
    test_rows = read_manifest(out / "test.jsonl")
    for k, sr in ((2, 8000), (3, 16000)):
        mix_dir = write_mixture_set(out, tmp_path / f"mix{k}", split="test", num_sources=k, sample_rate=sr, count=4,
                                    seed=7, segment_seconds=2.0)
        rows = [json.loads(x) for x in (mix_dir / "mixtures.jsonl").read_text().splitlines()]
        assert len(rows) == 4
        test_spk = {r["speaker"] for r in test_rows if sr == 8000 or r["bandwidth"] == "wideband"}
        for r in rows:
            assert len(set(r["speakers"])) == k and set(r["speakers"]) <= test_spk
        ds = MixtureFolderDataset(mix_dir, k, sr, use_noise=True)
        item = ds[0]
        assert item["sources"].shape == (k, 2 * sr) and item["mix"].shape == (1, 2 * sr)
        assert (item["sources"].sum(0) + item["noise"][0] - item["mix"][0]).abs().max() < 1e-5
        stamp = (mix_dir / "mixtures.jsonl").stat().st_mtime_ns
        write_mixture_set(out, mix_dir, split="test", num_sources=k, sample_rate=sr, count=4, seed=7,
                          segment_seconds=2.0)
        assert (mix_dir / "mixtures.jsonl").stat().st_mtime_ns == stamp  # same seed: the same set, not rewritten
        write_mixture_set(out, mix_dir, split="test", num_sources=k, sample_rate=sr, count=3, seed=8,
                          segment_seconds=2.0)
        assert len(list((mix_dir / "mix").iterdir())) == 3  # another recipe replaces the set, nothing stale
    with pytest.raises(CorpusError, match="different speakers"):
        write_mixture_set(out, tmp_path / "x", split="valid", num_sources=3, count=2)  # valid has one speaker


def test_cli_stats_plot_and_mixtures(fake_cache, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="sonotok")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "corpus"
    args = parser.parse_args(["corpus", "build", "--out", str(out), "--cache-dir", str(fake_cache), "--sources",
                              "klettres,ktuberling", "--valid-languages", "ca", "--test-languages", "bg,el,fr"])
    assert args.func(args) == 0
    png = tmp_path / "spk.png"
    args = parser.parse_args(["corpus", "stats", str(out), "--plot", str(png)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "narrowband" in text and "GPL-2+" in text and "speakers" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = parser.parse_args(["corpus", "mixtures", "--corpus", str(out), "--out", str(tmp_path / "mx"),
                              "--speakers", "2", "--rates", "8000,16000", "--count", "2", "--seconds", "1.5"])
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "mx").iterdir()) == ["2spk_16k", "2spk_8k"]


REAL_SOURCES = ["gcin-voice", "asterisk-fr-armelle", "asterisk-es-co"]
REAL_PACKAGES = ["gcin-voice", "asterisk-prompt-fr-armelle", "asterisk-prompt-es-co"]


@pytest.fixture(scope="module")
def real_cache():
    """gcin-voice (7 MB) and two 8 kHz Asterisk voices (2.5 MB), fetched once into the user's package cache."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("not a Debian system (apt-get / dpkg-deb missing)")
    cache = default_cache_dir()
    try:
        fetch_packages(REAL_PACKAGES, cache)
    except PackageFetchError as e:
        if subprocess.run(["apt-cache", "show", "gcin-voice"], capture_output=True).returncode != 0:
            pytest.skip(f"the Debian archive index lacks the packages (run apt-get update): {e}")
        raise
    return cache


def test_real_packages_fields_split_transcripts(real_cache, tmp_path):
    out = tmp_path / "real"
    s = build_corpus(out, sources=REAL_SOURCES, cache_dir=real_cache, limit_per_speaker=30,
                     valid_languages=["fr"], test_languages=["zh"], verbose=False)
    rows = read_manifest(out / "manifest.jsonl")
    assert rows and all(set(r) == set(FIELDS) for r in rows)
    assert {r["speaker"] for r in rows} == {"gcin_3", "gcin_5", "july_jimenez", "armelle"}
    by = {sp: {r["split"] for r in rows if r["speaker"] == sp} for sp in ("gcin_3", "gcin_5", "july_jimenez", "armelle")}
    assert by == {"gcin_3": {"test"}, "gcin_5": {"test"}, "july_jimenez": {"train"}, "armelle": {"valid"}}
    tel = [r for r in rows if r["language"] in ("es", "fr")]
    assert tel and all(r["bandwidth"] == "narrowband" and r["sample_rate"] == 8000 for r in tel)
    assert {r["licence"] for r in tel} == {"GPL-2", "BSD-2-clause-like"}
    zh = [r for r in rows if r["language"] == "zh"]
    assert all(r["bandwidth"] == "wideband" and r["sample_rate"] == 16000 for r in zh)
    assert all(r["text"] and len(r["text"].split()) == len(r["origin"]) for r in zh)  # one syllable per clip
    assert {r["licence"] for r in zh} == {"GPL-3 or LGPL-3", "CC-BY-3.0"}
    assert all(2.0 - 1e-6 <= r["duration"] <= 6.0 + 1e-6 for r in zh[:-2])  # joined syllables
    for r in rows[:20]:
        info = audio_info(out / r["path"])
        assert info.sample_rate == r["sample_rate"] and info.duration == pytest.approx(r["duration"], abs=1e-3)
    assert load_audio(out / zh[0]["path"]).abs().max() > 0.05
    held = transcribed_utterances(out, bandwidth=None)
    assert held and all(Path(r["path"]).is_file() and r["text"] for r in held)
    assert {r["split"] for r in held} <= {"valid", "test"}
    assert s["splits"]["test"]["text_seconds"] > 0 and s["splits"]["test"]["speakers"] == 2
    notice = (out / "NOTICE.txt").read_text()
    assert "Armelle Desjardins" in notice and "Chu Lo" in notice


def test_repository_notice_credits_every_source():
    from sonotok.data.corpus.build import SOURCES
    from sonotok.data.corpus.notice import notice_text

    text = (Path(__file__).resolve().parents[2] / "NOTICE.txt").read_text(encoding="utf-8")
    assert notice_text(list(SOURCES.values())) in text, "NOTICE.txt is stale: regenerate it from notice_text()"
    assert "VISIBLE CREDIT REQUIRED" in text and "Marco Menardi and Paola Dal Zot" in text


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (Debian package flite)")
def test_synthetic_voices_are_opt_in_and_tagged(tmp_path):
    out = tmp_path / "tts"
    build_corpus(out, sources=[], extra=["flite"], limit_per_speaker=3, valid_languages=[], test_languages=[],
                 test_speakers=["flite_kal16"], verbose=False)
    rows = read_manifest(out / "manifest.jsonl")
    assert {r["speaker"] for r in rows} == {"flite_slt", "flite_rms", "flite_awb", "flite_kal16"}
    assert all(r["synthetic"] is True and r["text"] and r["source"].startswith("flite:") for r in rows)
    assert {r["split"] for r in rows if r["speaker"] == "flite_kal16"} == {"valid", "test"}
    assert "synthetic" in (out / "NOTICE.txt").read_text()
    from sonotok.data.corpus import DEFAULT_SOURCES, EXTRA_SOURCES

    assert set(EXTRA_SOURCES) == {"espeak", "flite", "piper"} and not set(EXTRA_SOURCES) & set(DEFAULT_SOURCES)


def test_asterisk_prompts_fetched_when_not_installed(tmp_path, monkeypatch):
    """Without /usr/share/asterisk/sounds the G.722 prompts and their transcripts come from the cache."""
    pytest.importorskip("G722")
    from array import array

    from G722 import G722

    import sonotok.data.corpus.sources as S

    monkeypatch.setattr(S, "SOUNDS_ROOT", str(tmp_path / "not-installed"))
    monkeypatch.setattr(S, "DOC_ROOT", str(tmp_path / "no-docs"))
    cache = tmp_path / "cache"
    for lang, voice in (("en", "en_US_f_Allison"), ("fr", "fr_CA_f_June")):
        snd = _stamp(cache, f"asterisk-core-sounds-{lang}-g722") / "usr/share/asterisk/sounds" / voice
        snd.mkdir(parents=True)
        for j, name in enumerate(("hello", "goodbye", "beep")):
            x = _speech(1.0, 16000, 40 * j + (lang == "fr")) if name != "beep" else 0.5 * np.sin(np.arange(16000) * 0.4)
            pcm = array("h", np.clip(x * 32767, -32768, 32767).astype(np.int16).tolist())
            (snd / f"{name}.g722").write_bytes(bytes(G722(16000, 64000).encode(pcm)))
        doc = _stamp(cache, f"asterisk-core-sounds-{lang}") / f"usr/share/doc/asterisk-core-sounds-{lang}"
        doc.mkdir(parents=True)
        (doc / f"core-sounds-{lang}.txt.gz").write_bytes(gzip.compress(f"hello: Hello {lang}.\n".encode()))
    out = tmp_path / "c"
    build_corpus(out, sources=["asterisk"], languages=["en", "fr"], cache_dir=cache, test_speakers=["june"], min_train_seconds=0,
                 valid_every=2, verbose=False)
    rows = read_manifest(out / "manifest.jsonl")
    assert {(r["speaker"], r["language"]) for r in rows} == {("allison", "en"), ("june", "fr")}
    assert {Path(r["path"]).stem for r in rows} == {"hello", "goodbye"}  # the beep is dropped by name
    assert {r["text"] for r in rows if Path(r["path"]).stem == "hello"} == {"Hello en.", "Hello fr."}
    assert all(r["text"] is None for r in rows if Path(r["path"]).stem == "goodbye")


def test_mixtures_avoid_ids_that_may_be_one_volunteer(tmp_path):
    from sonotok.data.mixtures import MixtureDataset

    rows = []
    for spk, lang, src in (("tuxpaint_nl", "nl", "tuxpaint:nl"), ("klettres_nl", "nl", "klettres:nl"),
                           ("fillets_nl_big", "nl", "fillets:nl"), ("fillets_nl_small", "nl", "fillets:nl"),
                           ("tuxpaint_el", "el", "tuxpaint:el")):
        sf.write(tmp_path / f"{spk}.wav", _speech(1.0, 8000, len(rows)), 8000)
        rows.append({"path": f"{spk}.wav", "duration": 1.0, "speaker": spk, "language": lang, "source": src})
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = MixtureDataset(tmp_path / "test.jsonl", 2, 8000, segment_seconds=1.0, length=300, fixed=True)
    pairs = {frozenset(ds.describe(i)["speakers"]) for i in range(300)}
    fam = {r["speaker"]: r["source"].split(":")[0] for r in rows}
    lang = {r["speaker"]: r["language"] for r in rows}
    for p in pairs:
        a, b = sorted(p)
        assert not (lang[a] == lang[b] and fam[a] != fam[b]), p
    assert frozenset({"fillets_nl_big", "fillets_nl_small"}) in pairs  # one source names its voices apart
    assert frozenset({"tuxpaint_nl", "tuxpaint_el"}) in pairs
    loose = MixtureDataset(tmp_path / "test.jsonl", 2, 8000, segment_seconds=1.0, length=300, fixed=True,
                           avoid_same_voice=False)
    assert frozenset({"tuxpaint_nl", "klettres_nl"}) in {frozenset(loose.describe(i)["speakers"]) for i in range(300)}
