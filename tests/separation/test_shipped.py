"""The shipped separators: `sonotok.load_separator("default")` (non-causal) and `("causal")`, their model
cards, `sonotok separate --model default`, and the causal one streaming from its TorchScript export."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import sonotok
from sonotok.cli import main
from sonotok.model_io import PRETRAINED_DIR

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus-full"


def test_default_names_the_shipped_separator_and_load_default_stays_the_codec():
    sep = sonotok.load_separator("default")
    assert sep.num_sources == 2 and sep.sample_rate == 8000 and not sep.causal
    assert not hasattr(sonotok.load("default"), "num_sources")  # the codec keeps its name
    with pytest.raises(sonotok.ModelLoadError, match="not a separation model"):
        sonotok.load_separator(PRETRAINED_DIR / "default")


@pytest.mark.parametrize("name", ["default", "causal"])
def test_model_card(name):
    meta = sonotok.load_separator(name).meta
    for key in ("num_parameters", "macs_per_second", "latency_ms", "receptive_field_ms", "model_id"):
        assert meta[key], key
    t = meta["training"]
    assert t["steps"] > 0 and t["minutes"] > 0 and t["data"] and t["command"] and t["hardware"]
    assert (Path(__file__).resolve().parents[2] / meta["figures"]["learning_curve"]).is_file()
    ev = meta["evaluation"]
    assert np.isfinite(ev["sisnri_db"]) and "test.jsonl" in ev["data"]


def test_causal_streams_from_its_torchscript_artifact(tmp_path):
    from sonotok.export.separator import export_separator

    m = sonotok.load_separator("causal")
    assert m.causal
    info = export_separator(m, str(tmp_path), example_seconds=0.5)
    assert info["streaming_max_abs_diff"] < 1e-4
    st = torch.jit.load(str(tmp_path / "separator_streaming.pt"))
    x = torch.randn(1, 1, 4000) * 0.1
    with torch.no_grad():
        ref = m(x)
        state = st.init_state(1)
        xp = torch.cat([x, torch.zeros(1, 1, m.delay_samples)], -1)
        ys = []
        for i in range(0, xp.shape[-1], 80):  # 10 ms chunks
            y, state = st(xp[..., i : i + 80], state)
            ys.append(y)
    y = torch.cat(ys, -1)[..., m.delay_samples : m.delay_samples + x.shape[-1]]
    assert (y - ref).abs().max() < 1e-4 * max(1.0, float(ref.abs().max()))


def test_cli_separate_with_the_shipped_model(tmp_path, capsys):
    f = tmp_path / "mix.wav"
    rng = np.random.default_rng(0)
    sf.write(f, (0.05 * rng.standard_normal((16000, 2))).astype(np.float32), 16000)
    assert main(["separate", "--model", "default", str(f), "--out", str(tmp_path / "out")]) == 0
    for s in (1, 2):
        y, sr = sf.read(tmp_path / "out" / f"mix_s{s}.wav")
        assert sr == 16000 and y.shape == (16000,)


@pytest.mark.skipif(not (CORPUS / "test.jsonl").is_file(), reason="data/corpus-full not built")
def test_shipped_model_separates_held_out_speakers():
    from sonotok.data.mixtures import fixed_test_set
    from sonotok.evaluation.separation import evaluate_separation

    m = sonotok.load_separator("default")
    res = evaluate_separation(m, fixed_test_set(CORPUS / "test.jsonl", 8, 2, 8000, 4.0, seed=1234), oracles=[])
    assert res["model"]["sisnri"] > 2.0  # these 8: 2.94 dB; the bench (100 mixtures): 2.89 dB
