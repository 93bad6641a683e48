"""Recipe prepare steps on small fake trees that mimic each dataset's real layout."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sonotok.cli import main as cli_main
from sonotok.data.prepare import (
    DatasetLayoutError,
    prepare_libri2mix,
    prepare_librispeech,
    prepare_libritts,
    prepare_vctk,
)


def tone(path: Path, sr: int, seconds: float = 0.1, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.sin(np.arange(int(sr * seconds)) * 0.05)).astype(np.float32)
    sf.write(str(path), x, sr, format=fmt)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------- fake trees

@pytest.fixture
def libritts(tmp_path):
    root = tmp_path / "LibriTTS"
    for subset, spk, ch in [("train-clean-100", "84", "121123"), ("train-clean-100", "103", "1240"),
                            ("dev-clean", "1272", "128104"), ("test-clean", "1089", "134686")]:
        for utt in ("000007_000001", "000008_000000"):
            f = root / subset / spk / ch / f"{spk}_{ch}_{utt}.wav"
            tone(f, 24000)
            f.with_suffix("").with_suffix(".normalized.txt").write_text(f"Hello {spk} {utt}.\n")
            f.with_suffix("").with_suffix(".original.txt").write_text("HELLO")
    return tmp_path


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    for subset, spk, ch in [("train-clean-100", "19", "198"), ("dev-clean", "84", "121123"),
                            ("test-clean", "1089", "134686")]:
        d = root / subset / spk / ch
        lines = []
        for utt in ("0000", "0001", "0002"):
            tone(d / f"{spk}-{ch}-{utt}.flac", 16000, fmt="FLAC")
            lines.append(f"{spk}-{ch}-{utt} SOME WORDS {utt}")
        (d / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.fixture
def vctk(tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    for spk in ("p225", "p226", "p227", "p228", "p229", "p230", "p315"):
        for utt in ("001", "002"):
            for mic in ("mic1", "mic2"):
                tone(root / "wav48_silence_trimmed" / spk / f"{spk}_{utt}_{mic}.flac", 48000, fmt="FLAC")
            if spk != "p315":  # p315's transcripts are missing in the real corpus too
                (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (root / "txt" / spk / f"{spk}_{utt}.txt").write_text(f"Please call Stella {utt}.\n")
    return tmp_path


@pytest.fixture
def libri2mix(tmp_path):
    base = tmp_path / "Libri2Mix" / "wav8k" / "min"
    for split in ("train-100", "dev", "test"):
        for mid in ("103-1240-0003_1235-135887-0017", "19-198-0001_84-121123-0002"):
            for d in ("mix_clean", "mix_both", "s1", "s2", "noise"):
                tone(base / split / d / f"{mid}.wav", 8000)
    return tmp_path


# ------------------------------------------------------------------------- success paths

def test_libritts(libritts, tmp_path):
    out = tmp_path / "m"
    counts = prepare_libritts(libritts / "LibriTTS", out)
    assert counts == {"train": 4, "valid": 2, "test": 2}
    rows = read(out / "train.jsonl")
    r = rows[0]
    assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()
    assert r["sample_rate"] == 24000 and r["duration"] == pytest.approx(0.1, abs=1e-3)
    assert {x["speaker"] for x in rows} == {"84", "103"} and r["split"] == "train"
    assert r["text"].startswith("Hello ")
    assert read(out / "valid.jsonl")[0]["subset"] == "dev-clean"


def test_libritts_parent_folder_relative_paths_and_subsets(libritts, tmp_path):
    out = tmp_path / "m"
    counts = prepare_libritts(libritts, out, subsets=["dev-clean"], relative=True)
    assert counts == {"valid": 2}
    row = read(out / "valid.jsonl")[0]
    assert not Path(row["path"]).is_absolute() and (out / row["path"]).is_file()


def test_libritts_manifest_loads_in_audio_dataset(libritts, tmp_path):
    from sonotok.data.dataset import AudioDataset

    prepare_libritts(libritts, tmp_path / "m", relative=True)
    ds = AudioDataset(str(tmp_path / "m" / "train.jsonl"), sample_rate=24000, segment_seconds=0.05)
    assert len(ds) == 4 and ds[0].shape[-1] == 1200


def test_librispeech(librispeech, tmp_path):
    counts = prepare_librispeech(librispeech, tmp_path / "m")
    assert counts == {"train": 3, "valid": 3, "test": 3}
    r = read(tmp_path / "m" / "test.jsonl")[1]
    assert r["speaker"] == "1089" and r["text"] == "SOME WORDS 0001" and r["sample_rate"] == 16000
    assert r["path"].endswith("1089-134686-0001.flac")


def test_vctk_held_out_speakers(vctk, tmp_path):
    counts = prepare_vctk(vctk, tmp_path / "m")
    assert counts == {"train": 2, "valid": 4, "test": 8}
    test = read(tmp_path / "m" / "test.jsonl")
    assert {r["speaker"] for r in test} == {"p228", "p229", "p230", "p315"}
    assert all(r["path"].endswith("_mic1.flac") for r in test)
    assert {r["speaker"] for r in read(tmp_path / "m" / "valid.jsonl")} == {"p226", "p227"}
    p315 = [r for r in test if r["speaker"] == "p315"]
    assert p315 and all("text" not in r for r in p315)
    assert any(r.get("text") == "Please call Stella 001." for r in test)


def test_vctk_named_speakers_and_mic2(vctk, tmp_path):
    counts = prepare_vctk(vctk, tmp_path / "m", mic="mic2", test_speakers=["p225"], valid_speakers=["p226"])
    assert counts == {"train": 10, "valid": 2, "test": 2}
    assert read(tmp_path / "m" / "test.jsonl")[0]["id"] == "p225_001"


def test_libri2mix(libri2mix, tmp_path):
    counts = prepare_libri2mix(libri2mix / "Libri2Mix", tmp_path / "m")
    assert counts == {"train": 2, "valid": 2, "test": 2}
    r = read(tmp_path / "m" / "valid.jsonl")[0]
    assert r["mix"] == r["path"] and "/mix_clean/" in r["mix"]
    assert "/s1/" in r["s1"] and "/s2/" in r["s2"] and "noise" not in r
    assert r["speakers"] == ["103", "1235"] and r["sample_rate"] == 8000
    counts = prepare_libri2mix(libri2mix, tmp_path / "b", mixture="both", splits=["test"])
    r = read(tmp_path / "b" / "test.jsonl")[0]
    assert counts == {"test": 2} and "/mix_both/" in r["mix"] and "/noise/" in r["noise"]


def test_cli_prepare(libritts, tmp_path, capsys):
    assert cli_main(["prepare", "libritts", "--root", str(libritts), "--out", str(tmp_path / "m")]) == 0
    assert "train.jsonl: 4 rows" in capsys.readouterr().out


# ------------------------------------------------------------------------- wrong layouts

def test_missing_root_names_expected_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"no such folder.*LibriTTS/<subset>/<speaker>"):
        prepare_libritts(tmp_path / "nope", tmp_path / "m")


def test_wrong_dataset_folder(librispeech, tmp_path):
    # a LibriSpeech copy given to the VCTK preparer
    with pytest.raises(DatasetLayoutError, match=r"not a VCTK 0.92 folder.*found LibriSpeech/.*wav48_silence_trimmed"):
        prepare_vctk(librispeech, tmp_path / "m")


def test_libritts_flat_files_are_rejected(tmp_path):
    f = tmp_path / "LibriTTS" / "train-clean-100" / "84_121123_000007_000001.wav"
    tone(f, 24000)
    with pytest.raises(DatasetLayoutError, match=r"no <speaker>/<chapter>/\*.wav files \(found .*84_121123"):
        prepare_libritts(tmp_path, tmp_path / "m")


def test_libritts_misnamed_file(tmp_path):
    tone(tmp_path / "LibriTTS" / "dev-clean" / "84" / "121123" / "utt1.wav", 24000)
    with pytest.raises(DatasetLayoutError, match=r"utt1.wav: name does not start with <speaker>_<chapter>_"):
        prepare_libritts(tmp_path, tmp_path / "m")


def test_missing_subset(libritts, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"missing subset folder\(s\) test-other/"):
        prepare_libritts(libritts, tmp_path / "m", subsets=["test-other"])
    with pytest.raises(DatasetLayoutError, match=r"unknown LibriTTS subset"):
        prepare_libritts(libritts, tmp_path / "m", subsets=["train"])


def test_librispeech_wav_instead_of_flac(tmp_path):
    tone(tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0000.wav", 16000)
    with pytest.raises(DatasetLayoutError, match=r"no .flac files"):
        prepare_librispeech(tmp_path, tmp_path / "m")


def test_vctk_old_layout(tmp_path):
    # VCTK 0.80 ships wav48/<spk>/<spk>_<utt>.wav: say what 0.92 layout is expected
    tone(tmp_path / "VCTK-Corpus" / "wav48" / "p225" / "p225_001.wav", 48000)
    with pytest.raises(DatasetLayoutError, match=r"wav48_silence_trimmed"):
        prepare_vctk(tmp_path / "VCTK-Corpus", tmp_path / "m")


def test_libri2mix_missing_source_folder_and_file(libri2mix, tmp_path):
    import shutil

    base = libri2mix / "Libri2Mix" / "wav8k" / "min"
    (base / "dev" / "s2" / "19-198-0001_84-121123-0002.wav").unlink()
    with pytest.raises(DatasetLayoutError, match=r"s2/19-198-0001_84-121123-0002.wav: missing"):
        prepare_libri2mix(libri2mix, tmp_path / "m", splits=["dev"])
    shutil.rmtree(base / "test" / "s1")
    with pytest.raises(DatasetLayoutError, match=r"test: missing folder\(s\) s1/"):
        prepare_libri2mix(libri2mix, tmp_path / "m", splits=["test"])
    with pytest.raises(DatasetLayoutError, match=r"not a Libri2Mix folder.*looked for wav16k/min/"):
        prepare_libri2mix(libri2mix, tmp_path / "m", sample_rate="16k")


def test_cli_reports_layout_errors(tmp_path, capsys):
    assert cli_main(["prepare", "libri2mix", "--root", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "expected Libri2Mix/wav" in capsys.readouterr().err


# ------------------------------------------------------------------------- run.sh

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("recipe", ["libritts_24k", "librispeech_16k", "vctk_24k", "libri2mix_8k"])
def test_run_sh_is_valid_bash_with_all_stages(recipe):
    import subprocess

    script = RECIPES / recipe / "run.sh"
    assert (RECIPES / recipe / "README.md").is_file()
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for stage in ("prepare", "train", "export", "eval"):
        assert f"$SONOTOK {stage}" in text or f"$SONOTOK {stage.replace('eval', 'separation-eval')}" in text
    assert "trainer=" in text and "published" in (RECIPES / recipe / "README.md").read_text()


@pytest.mark.parametrize("recipe,tree", [("libritts_24k", "libritts"), ("librispeech_16k", "librispeech"),
                                         ("vctk_24k", "vctk"), ("libri2mix_8k", "libri2mix")])
def test_run_sh_prepare_stage(recipe, tree, request, tmp_path):
    import subprocess
    import sys

    root = request.getfixturevalue(tree)
    sub = {"libritts": "LibriTTS", "librispeech": "LibriSpeech", "vctk": "VCTK-Corpus-0.92",
           "libri2mix": "Libri2Mix"}[tree]
    env = {**os.environ, "DATA_ROOT": str(root / sub), "WORK": str(tmp_path / "work"),
           "SONOTOK": f"{sys.executable} -m sonotok.cli"}
    subprocess.run(["bash", str(RECIPES / recipe / "run.sh"), "0", "0"], check=True, env=env,
                   cwd=RECIPES.parent, capture_output=True)
    assert (tmp_path / "work" / "manifests" / "test.jsonl").is_file()
