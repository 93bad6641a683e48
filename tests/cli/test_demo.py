"""`sonotok demo` end to end on a small corpus subset: train, tokenize, decode, evaluate, compare."""

import json
import os
from pathlib import Path

import pytest

from sonotok.cli import main as cli_main

SOUNDS = Path("/usr/share/asterisk/sounds")


@pytest.mark.skipif(not (SOUNDS / "fr_CA_f_June").is_dir(), reason="Asterisk sound packages not installed")
def test_demo_runs_end_to_end(tmp_path, capsys):
    from sonotok.data.corpus import build_corpus

    corpus = tmp_path / "corpus"
    build_corpus(corpus, sources=["asterisk"], languages=("en", "fr", "ru"), test_speakers=("june", "ivrvoice_ru"),
                 limit_per_speaker=4, verbose=False)
    out = tmp_path / "demo"
    rc = cli_main([
        "demo", "--corpus", str(corpus), "--minutes", "0.1", "--out", str(out), "--eval-files", "2",
        "--threads", "1", "--processes", "2", "encoder.width=16", "decoder.width=16", "data.num_workers=0", "data.batch_size=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    ])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Held-out speakers" in text and "target PESQ-WB >= 2.0" in text
    results = json.loads((out / "demo_results.json").read_text())
    assert results, "no results"
    for summary in results.values():
        assert 0.9 < summary["pesq_wb"] < 4.6 and 0.0 <= summary["stoi"] <= 1.0
        assert summary["bitrate_kbps"] <= 4.0
    assert len(list((out / "tokens").rglob("*.npy"))) == 2
    assert len(list((out / "reconstructed").rglob("*.wav"))) == 2
    assert os.path.isfile(out / "train" / "model" / "model.safetensors")
    assert "2 data-parallel processes" in text
