import os

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.data.audio import audio_info, load_audio, save_audio
from sonotok.errors import AudioError


def _sine(sr, seconds=0.25, channels=1, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1)


def _expect_error(path, match, **kw):
    with pytest.raises(AudioError, match=match) as ei:
        load_audio(path, 16000, **kw)
    assert str(path) in str(ei.value)
    assert ei.value.path == str(path)
    assert "\n" not in str(ei.value)


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "not found")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _expect_error(p, "empty file")


def test_truncated_header(tmp_path):
    p = tmp_path / "ok.wav"
    sf.write(p, _sine(16000), 16000)
    bad = tmp_path / "trunc.wav"
    bad.write_bytes(p.read_bytes()[:20])
    _expect_error(bad, "corrupt or truncated")


def test_truncated_data(tmp_path):
    p = tmp_path / "ok.wav"
    sf.write(p, _sine(16000), 16000)
    bad = tmp_path / "trunc_data.wav"
    bad.write_bytes(p.read_bytes()[:100])
    _expect_error(bad, "truncated audio data")


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.wav"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    _expect_error(p, "not an audio file|unsupported")


def test_text_file_with_audio_extension(tmp_path):
    p = tmp_path / "notes.flac"
    p.write_text("this is not audio at all\n" * 10)
    _expect_error(p, "not an audio file|unsupported")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_samples(tmp_path, value):
    x = _sine(16000)
    x[10, 0] = value
    p = tmp_path / "bad.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    _expect_error(p, "NaN" if np.isnan(value) else "Inf")


def test_zero_length(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1), np.float32), 16000)
    _expect_error(p, "zero-length")


def test_reject_multichannel(tmp_path):
    p = tmp_path / "three.wav"
    sf.write(p, _sine(16000, channels=3), 16000)
    _expect_error(p, "wrong channel count: 3", channels="reject")


def test_directory_instead_of_file(tmp_path):
    p = tmp_path / "dir.wav"
    p.mkdir()
    _expect_error(p, "directory")


def test_unreadable_permissions(tmp_path):
    p = tmp_path / "secret.wav"
    sf.write(p, _sine(16000), 16000)
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: chmod 000 does not block reading")
        _expect_error(p, "permission denied")
    finally:
        os.chmod(p, 0o644)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_formats_and_resampling(tmp_path, subtype, sr):
    p = tmp_path / f"x_{subtype}_{sr}.wav"
    sf.write(p, _sine(sr, 0.2), sr, subtype=subtype)
    wav = load_audio(p, 16000)
    assert wav.dtype == torch.float32 and wav.dim() == 2 and wav.shape[0] == 1
    assert abs(wav.shape[1] - 3200) <= 1
    assert 0.3 < wav.abs().max() < 0.6
    native = load_audio(p, None)
    assert native.shape[1] == int(sr * 0.2)


def test_flac_and_ogg(tmp_path):
    for name in ("a.flac", "a.ogg"):
        p = tmp_path / name
        sf.write(p, _sine(24000), 24000)
        assert load_audio(p, 16000).shape == (1, 4000)


def test_channel_policies(tmp_path):
    x = np.stack([np.full(800, 0.5), np.full(800, -0.1)], axis=1).astype(np.float32)
    p = tmp_path / "stereo.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    assert torch.allclose(load_audio(p, None, "downmix"), torch.full((1, 800), 0.2))
    assert torch.allclose(load_audio(p, None, "first"), torch.full((1, 800), 0.5))
    assert load_audio(p, None, "keep").shape == (2, 800)
    with pytest.raises(ValueError):
        load_audio(p, None, "bogus")


def test_offset_duration(tmp_path):
    p = tmp_path / "ramp.wav"
    sf.write(p, (np.arange(16000) / 16000).astype(np.float32), 16000, subtype="FLOAT")
    w = load_audio(p, None, offset=0.5, duration=0.25)
    assert w.shape == (1, 4000)
    assert w[0, 0].item() == pytest.approx(0.5)


def test_info_and_atomic_save(tmp_path):
    p = tmp_path / "sub" / "out.wav"
    wav = torch.from_numpy(_sine(16000, 0.5).T.copy()) * 3  # clipped to [-1, 1) for PCM_16
    save_audio(p, wav, 16000)
    info = audio_info(p)
    assert (info.sample_rate, info.frames, info.channels, info.subtype) == (16000, 8000, 1, "PCM_16")
    assert info.duration == pytest.approx(0.5)
    assert sorted(os.listdir(p.parent)) == ["out.wav"]  # no temporary left behind
    save_audio(p, wav / 3, 16000, subtype="FLOAT")
    back = load_audio(p, None)
    assert torch.allclose(back, wav / 3, atol=1e-6)
    assert audio_info(p).subtype == "FLOAT"
