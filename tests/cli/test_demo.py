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
    trained = next(k for k in results if k.startswith("tiny"))
    pretrained = "pretrained 'default'"
    assert set(results) == {trained, pretrained}
    assert len(list((out / "tokens").rglob("*.npy"))) == 2
    assert len(list((out / "reconstructed").rglob("*.wav"))) == 2
    assert os.path.isfile(out / "train" / "model" / "model.safetensors")
    assert "2 data-parallel processes" in text

    # the files scored are the held-out speakers' (never seen in training)
    evaluated = [f["path"] for f in json.loads((out / "eval" / "metrics.json").read_text())["files"]]
    test_rows = {str((corpus / r["path"]).resolve()): r for r in map(json.loads, open(corpus / "test.jsonl"))}
    train_speakers = {json.loads(line)["speaker"] for line in open(corpus / "train.jsonl")}
    assert len(evaluated) == 2 and all(p in test_rows for p in evaluated)
    assert not {test_rows[p]["speaker"] for p in evaluated} & train_speakers
    # each reported row is what the model it names scores on those files, scored independently here
    import sonotok
    from sonotok.evaluation.codec import evaluate

    for name, model in ((trained, out / "train" / "model"), (pretrained, "default")):
        again = evaluate(sonotok.load(model), evaluated, verbose=False)["summary"]
        for key in ("pesq_wb", "stoi", "mel_distance", "si_sdr", "bitrate_kbps"):
            assert results[name][key] == pytest.approx(again[key], rel=1e-6, abs=1e-9), (name, key)
        assert results[name]["bitrate_kbps"] <= 4.0
    # the shipped model (trained for minutes) beats the one trained here for a few seconds on the same files:
    # a comparison that mixes up the models, files or references would not show this
    assert results[pretrained]["stoi"] > results[trained]["stoi"] + 0.2
    assert results[pretrained]["mel_distance"] < results[trained]["mel_distance"] - 0.2
    # the audio `sonotok decode` wrote is the reconstruction the evaluation scored (up to 16-bit rounding)
    from sonotok.data.audio import load_audio
    from sonotok.metrics.quality import mel_distance

    per_file = {f["path"]: f["mel_distance"] for f in json.loads((out / "eval" / "metrics.json").read_text())["files"]}
    tokens = [json.loads(line) for line in open(out / "tokens" / "manifest.jsonl")]
    assert sorted(str(Path(r["source"]).resolve()) for r in tokens) == sorted(evaluated)
    for row in tokens:
        ref_path = str(Path(row["source"]).resolve())
        ref = load_audio(ref_path, 16000)[0]
        rec = load_audio(out / "reconstructed" / Path(row["codes"]).with_suffix(".wav"), 16000)[0]
        assert rec.shape == ref.shape
        assert float(mel_distance(ref, rec, 16000)) == pytest.approx(per_file[ref_path], abs=0.02)
