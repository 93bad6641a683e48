import argparse
import json
import math

import pytest
import soundfile as sf
import torch

import sonotok
from sonotok.cli import eval as eval_cli
from sonotok.evaluation.codec import evaluate, find_audio, format_comparison, format_table

SR = 16000


def speech_like(
    seconds: float = 2.0, sample_rate: int = SR, f0: float = 120.0, seed: int = 0
) -> torch.Tensor:
    """Harmonic tone with a gliding pitch, formant-shaped harmonics and syllable-rate AM, ``[T]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.1 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    formants = torch.tensor([500.0, 1500.0, 2500.0]) * (1 + 0.2 * torch.rand(3, generator=g))
    wav = torch.zeros_like(t)
    for h in range(1, 30):
        freq = h * f0
        if freq > sample_rate / 2 - 200:
            break
        amp = sum(torch.exp(-(((freq - f) / 150.0) ** 2)) for f in formants) + 0.02
        wav += amp * torch.sin(h * phase)
    wav = wav * (0.5 - 0.5 * torch.cos(2 * math.pi * 3.5 * t)) ** 2
    return 0.3 * wav / wav.abs().max()


class MuLawCodec(torch.nn.Module):
    """Identity-like fake codec: one codebook of 256 mu-law levels, one code per sample."""

    sample_rate = SR
    hop_length = 1
    frame_rate = float(SR)
    num_codebooks = 1
    codebook_size = 256

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def encode(self, wav):
        assert wav.dim() == 3 and wav.shape[1] == 1, wav.shape
        return torch.ops.aten.round(
            (torch.sign(wav) * torch.log1p(255 * wav.abs().clamp(max=1)) / math.log(256) + 1) / 2 * 255
        ).long()

    def decode(self, codes):
        y = codes.float() / 255 * 2 - 1
        y = torch.sign(y) * ((1 + 255) ** y.abs() - 1) / 255
        return torch.nn.functional.pad(y, (0, 7))  # decoders may return a few extra samples


@pytest.fixture()
def corpus(tmp_path):
    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    rows = []
    for i in range(3):
        wav = speech_like(seed=i, f0=110.0 + 40 * i)
        sf.write(str(data / "wavs" / f"utt{i}.wav"), wav.numpy(), SR)
        rows.append({"path": f"wavs/utt{i}.wav", "duration": 2.0, "speaker": f"spk{i % 2}"})
    manifest = data / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_find_audio(corpus):
    from_manifest = find_audio(corpus)
    from_folder = find_audio(corpus.parent)
    assert [r["path"] for r in from_manifest] == [r["path"] for r in from_folder]
    assert from_manifest[0]["speaker"] == "spk0"


def test_evaluate_mulaw(corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    result = evaluate(MuLawCodec(), corpus, max_files=2, out_dir=out, save_wavs=1)
    printed = capsys.readouterr().out
    assert "pesq_wb" in printed and "MEAN" in printed
    for name in ("metrics.json", "spectrograms.png", "codebook_usage.png", "wavs/0000_utt0.wav"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) == {"model", "summary", "codebooks", "files"}
    assert len(saved["files"]) == 2 and saved["files"][0]["speaker"] == "spk0"
    s = result["summary"]
    assert s["pesq_wb"] > 3.0
    assert s["stoi"] > 0.95
    assert 25 < s["si_sdr"] < 60
    assert s["mel_distance"] < 0.5
    assert s["bitrate_kbps"] == pytest.approx(128.0)
    assert s["tokens_per_second"] == 16000
    assert s["entropy_bitrate_kbps"] < s["bitrate_kbps"]
    assert 0.2 < result["codebooks"][0]["utilization"] <= 1.0
    assert 1 < result["codebooks"][0]["perplexity"] <= 256
    for key in ("rtf_encode", "rtf_decode"):  # compute seconds over audio seconds, not a mean of ratios
        files = result["files"]
        total = sum(f[key] * f["duration"] for f in files) / sum(f["duration"] for f in files)
        assert s[key] == pytest.approx(total) and s[key] > 0
    for key in ("pesq_wb", "stoi", "si_sdr", "mel_distance"):  # the summary is the mean of the files
        assert s[key] == pytest.approx(sum(f[key] for f in result["files"]) / 2)
    saved_wav, _ = sf.read(str(out / "wavs" / "0000_utt0.wav"), dtype="float32")
    assert len(saved_wav) == int(2.0 * SR)  # the reconstruction, cropped to the input
    assert saved["summary"]["pesq_wb"] == pytest.approx(s["pesq_wb"])


def test_format_helpers():
    table = format_table([{"name": "a", "x": 1.5}, {"name": "long-name", "x": float("nan")}], ["name", "x"])
    lines = table.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines[:2]}) == 1
    assert "nan" in lines[-1]
    cmp = format_comparison({"ours": {"summary": {"pesq_wb": 3.1, "stoi": 0.9}}, "encodec": {"pesq_wb": 2.5}})
    assert cmp.splitlines()[0].split() == ["metric", "ours", "encodec"]
    assert "pesq_wb" in cmp and "-" in cmp.splitlines()[-1]


def test_eval_cli(corpus, tmp_path, monkeypatch, capsys):
    loaded = {}

    def fake_load(path, map_location="cpu"):
        loaded["path"] = path
        return MuLawCodec()

    monkeypatch.setattr(sonotok, "load", fake_load)
    parser = argparse.ArgumentParser(prog="sonotok")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "eval",
            "--model",
            "some/dir",
            "--data",
            str(corpus),
            "--max-files",
            "1",
            "--max-seconds",
            "1.0",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert args.func(args) == 0
    assert loaded["path"] == "some/dir"
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["num_files"] == 1
    assert result["files"][0]["duration"] == pytest.approx(1.0)
    bad = parser.parse_args(
        ["eval", "--model", "x", "--data", str(tmp_path / "missing.jsonl"), "--device", "cpu"]
    )
    assert bad.func(bad) == 1


class TwoBookMuLaw(MuLawCodec):
    """Two identical codebooks; encode takes ``num_codebooks`` like the real Codec."""

    num_codebooks = 2

    def __init__(self):
        super().__init__()
        self.asked = []

    def encode(self, wav, num_codebooks=None):
        self.asked.append(num_codebooks)
        return super().encode(wav).repeat(1, num_codebooks or 2, 1)

    def decode(self, codes):
        return super().decode(codes[:, :1])


def test_evaluate_num_codebooks(corpus):
    codec = TwoBookMuLaw()
    full = evaluate(codec, corpus, max_files=1, max_seconds=0.5, verbose=False)
    half = evaluate(codec, corpus, max_files=1, max_seconds=0.5, num_codebooks=1, verbose=False)
    assert codec.asked == [None, 1]
    assert full["summary"]["bitrate_kbps"] == pytest.approx(256.0)
    assert half["summary"]["bitrate_kbps"] == pytest.approx(128.0)
    assert len(full["codebooks"]) == 2 and len(half["codebooks"]) == 1
    assert half["summary"]["si_sdr"] == pytest.approx(full["summary"]["si_sdr"])
    with pytest.raises(ValueError, match="num_codebooks"):
        evaluate(codec, corpus, num_codebooks=3, verbose=False)


def test_find_audio_is_the_shared_scanner(tmp_path):
    """Evaluation scans like every other command: hidden files (a file being written) are not audio items,
    and every extension sonotok reads is taken."""
    from sonotok.data.sources import scan_audio

    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.flac", ".a.wav.tmp.wav"):
        sf.write(str(folder / name), speech_like(seconds=0.3).numpy(), SR)
    found = [r["path"] for r in find_audio(folder)]
    assert found == [e.path for e in scan_audio(folder)]
    assert sorted(p.split("/")[-1] for p in found) == ["a.wav", "b.flac"]


def test_one_mean_for_codec_and_separation_evaluation():
    from sonotok.evaluation import codec, report, separation

    assert codec.mean_finite is report.mean_finite is separation.mean_finite
    assert report.mean_finite([1.0, float("nan"), None, float("inf"), 3.0]) == 2.0
    assert math.isnan(report.mean_finite([float("nan")]))
    assert not hasattr(codec, "_mean") and not hasattr(separation, "_mean")


def test_codec_bitrate_asks_the_codec_for_the_codebooks_used():
    from sonotok.metrics.bitrate import codec_bitrate

    class Codec:
        frame_rate, num_codebooks, codebook_size = 50.0, 8, 1024

        def bitrate(self, num_codebooks=None):
            return 1000.0 * (num_codebooks or 8)

    assert codec_bitrate(Codec(), 2) == 2000.0 and codec_bitrate(Codec()) == 8000.0

    class NoMethod:
        frame_rate, num_codebooks, codebook_size = 50.0, 8, 1024

    assert codec_bitrate(NoMethod(), 2) == 50.0 * 2 * 10
