"""Opus / Codec2 baselines: payload bitrate, delay removal, scoring through sonotok's metrics."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from sonotok.errors import SonotokError
from sonotok.evaluation.classic import (
    ClassicCodec,
    align,
    evaluate_classic,
    ogg_payload_bytes,
    parse_classic,
    require_tools,
)

needs_tools = pytest.mark.skipif(not (shutil.which("opusenc") and shutil.which("c2enc")),
                                 reason="opus-tools / codec2 not installed (make test installs them)")


def _speechlike(seconds=2.0, sr=16000, seed=0):
    """Harmonic bursts with a moving pitch and syllable-rate envelope (PESQ needs speech-like activity)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    return (0.2 * x * env + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_parse_and_names():
    assert parse_classic("opus:6") == ClassicCodec("opus", "6")
    assert parse_classic("codec2:700C").nominal_kbps == 0.7
    assert parse_classic("codec2:3200").name == "Codec2 3200"
    with pytest.raises(ValueError, match="opus:<kbps>"):
        parse_classic("mp3:128")


def test_align_recovers_a_known_delay_both_ways():
    x = _speechlike(1.0)
    for lag in (0, 37, 312):
        delayed = np.concatenate([np.zeros(lag, np.float32), x])[: len(x) + 50]
        np.testing.assert_allclose(align(x, delayed, 400)[: len(x) - lag], x[: len(x) - lag], atol=1e-7)
    early = x[25:]
    out = align(x, early, 400)
    np.testing.assert_allclose(out[25:], x[25:], atol=1e-7)
    assert out.shape == x.shape


def test_missing_tools_name_the_debian_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SonotokError, match="apt-get install -y codec2 opus-tools"):
        require_tools()


@needs_tools
def test_opus_payload_excludes_the_container(tmp_path):
    import subprocess

    sf.write(tmp_path / "x.wav", _speechlike(3.0), 16000, subtype="PCM_16")
    subprocess.run(["opusenc", "--quiet", "--bitrate", "6", "--hard-cbr", "--framesize", "20",
                    str(tmp_path / "x.wav"), str(tmp_path / "x.opus")], check=True)
    payload = ogg_payload_bytes(tmp_path / "x.opus")
    size = (tmp_path / "x.opus").stat().st_size
    assert payload < size  # headers and page overhead are not counted
    kbps = 8 * payload / 3.0 / 1000
    assert 5.5 < kbps < 6.5, kbps  # hard CBR at 6 kbps, 20 ms frames
    with pytest.raises(SonotokError, match="not an Ogg stream"):
        (tmp_path / "bad.opus").write_bytes(b"RIFF" + bytes(100))
        ogg_payload_bytes(tmp_path / "bad.opus")


@needs_tools
def test_classic_codecs_score_in_their_known_order(tmp_path):
    files = []
    for i in range(2):
        p = tmp_path / f"s{i}.wav"
        sf.write(p, _speechlike(3.0, seed=i), 16000)
        files.append(p)
    res = {spec: evaluate_classic(parse_classic(spec), files)["summary"] for spec in ("opus:16", "opus:6", "codec2:3200")}
    for spec, nominal in (("opus:16", 16), ("opus:6", 6), ("codec2:3200", 3.2)):
        assert abs(res[spec]["bitrate_kbps"] - nominal) / nominal < 0.1, (spec, res[spec]["bitrate_kbps"])
    # more bits, better reconstruction; the 8 kHz parametric codec is last on the mel distance
    assert res["opus:16"]["pesq_wb"] > res["opus:6"]["pesq_wb"]
    assert res["opus:16"]["mel_distance"] < res["opus:6"]["mel_distance"] < res["codec2:3200"]["mel_distance"]
    assert res["opus:16"]["si_sdr"] > 5  # delay removed: a transparent-ish waveform codec aligns sample-exactly
