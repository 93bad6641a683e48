"""`sonotok separate` / separate_file on awkward inputs: a result or a clear error naming the file."""

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.cli import main
from sonotok.data.audio import AudioError
from sonotok.models.separate import separate_file


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from hydra.utils import instantiate

    import sonotok
    from sonotok.model_io import save_model
    from sonotok.training.train import compose_config

    cfg = compose_config(["separation=convtasnet_tiny", "separator.encoder.num_filters=16",
                          "separator.masker.bottleneck=8", "separator.masker.hidden=8"], config_name="separate")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("m") / "sep"
    save_model(instantiate(cfg.separator), d, cfg.separator)
    return d, sonotok.load_separator(d)


def _voice(sr, seconds, f0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("sr,channels", [(8000, 1), (16000, 1), (11025, 1), (44100, 2), (48000, 6)])
def test_any_rate_and_channel_count(tmp_path, tiny, sr, channels):
    _, model = tiny
    x = np.stack([_voice(sr, 0.5, 150 + 40 * c, seed=c) for c in range(channels)], -1)
    f = tmp_path / "mix.wav"
    sf.write(f, x if channels > 1 else x[:, 0], sr)
    res = separate_file(model, f, tmp_path / "out")
    assert len(res) == 2 and res.warnings == []
    for p in res:
        y, ysr = sf.read(p)
        assert ysr == sr and y.shape == (x.shape[0],) and np.isfinite(y).all()


@pytest.mark.parametrize("frames", [1, 7, 40, 200])
def test_very_short_files_give_a_result(tmp_path, tiny, frames):
    _, model = tiny
    f = tmp_path / "short.wav"
    sf.write(f, _voice(16000, 0.1, 200)[:frames], 16000)
    for p in separate_file(model, f, tmp_path / "out"):
        y, sr = sf.read(p)
        assert sr == 16000 and y.shape == (frames,)


def test_silence_and_single_speaker(tmp_path, tiny):
    _, model = tiny
    f = tmp_path / "silence.wav"
    sf.write(f, np.zeros(8000, np.float32), 8000)
    res = separate_file(model, f, tmp_path / "out")
    assert any("silent" in w for w in res.warnings)
    for p in res:
        y, _ = sf.read(p)
        assert np.all(y == 0)
    g = tmp_path / "one.wav"
    sf.write(g, _voice(8000, 1.0, 180), 8000)
    res = separate_file(model, g, tmp_path / "out")
    assert len(res) == 2 and not res.warnings
    assert all(np.isfinite(sf.read(p)[0]).all() for p in res)


def test_unreadable_inputs_are_errors_naming_the_file(tmp_path, tiny):
    _, model = tiny
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 8000)
    nan = tmp_path / "nan.wav"
    x = _voice(8000, 0.2, 200)
    x[100] = np.nan
    sf.write(nan, x, 8000, subtype="FLOAT")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEfmt nonsense")
    for f, what in ((empty, ""), (nan, "NaN"), (junk, "")):
        with pytest.raises(AudioError, match=f.name) as e:
            separate_file(model, f, tmp_path / "out")
        assert what in str(e.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("nan_*"))


def test_cli_batch_keeps_going_and_exits_nonzero(tmp_path, tiny, capsys):
    d, _ = tiny
    ins = tmp_path / "in"
    ins.mkdir()
    sf.write(ins / "a_stereo.wav", np.stack([_voice(22050, 0.3, 150), _voice(22050, 0.3, 230)], -1), 22050)
    sf.write(ins / "b_silent.wav", np.zeros(800, np.float32), 8000)
    (ins / "c_bad.wav").write_bytes(b"not audio")
    sf.write(ins / "d_empty.wav", np.zeros(0, np.float32), 8000)
    sf.write(ins / "e_long.flac", np.tile(_voice(16000, 1.0, 170), 25), 16000)  # 25 s: windowed
    rc = main(["separate", "--model", str(d), str(ins), "--out", str(tmp_path / "out"), "--chunk-seconds", "4"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "c_bad.wav" in cap.err and "d_empty.wav" in cap.err and "2 of 5 input(s) failed" in cap.err
    assert "warning:" in cap.err and "b_silent.wav" in cap.err
    for stem, n, sr in (("a_stereo", 6615, 22050), ("b_silent", 800, 8000), ("e_long", 400000, 16000)):
        for s in (1, 2):
            y, ysr = sf.read(tmp_path / "out" / f"{stem}_s{s}.wav")
            assert ysr == sr and y.shape == (n,)
    assert main(["separate", "--model", str(d), str(ins / "a_stereo.wav"), "--out", str(tmp_path / "o2")]) == 0
