import numpy as np
import soundfile as sf
import torch

from sonotok.cli import main


def _model_dir(tmp_path):
    from hydra.utils import instantiate

    from sonotok.model_io import save_model
    from sonotok.training.train import compose_config

    cfg = compose_config(["separation=convtasnet_tiny", "separator.encoder.num_filters=16",
                          "separator.masker.bottleneck=8", "separator.masker.hidden=8"], config_name="separate")
    save_model(instantiate(cfg.separator), tmp_path / "sep", cfg.separator)
    return tmp_path / "sep"


def test_cli_separate_good_and_bad(tmp_path, capsys):
    model = _model_dir(tmp_path)
    good = tmp_path / "in" / "good.wav"
    good.parent.mkdir()
    sf.write(good, (np.random.default_rng(0).standard_normal(1600) * 0.1).astype(np.float32), 16000)
    bad = tmp_path / "in" / "bad.wav"
    bad.write_bytes(b"not audio at all")
    missing = tmp_path / "missing.wav"
    rc = main(["separate", "--model", str(model), str(bad), str(missing), str(good), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "bad.wav" in err and "missing.wav" in err and "2 of 3 input(s) failed" in err
    for line in err.strip().splitlines():
        assert line.startswith("error:") or "failed" in line
    for s in (1, 2):
        data, sr = sf.read(tmp_path / "out" / f"good_s{s}.wav")
        assert sr == 16000 and data.shape == (1600,)
    assert not list((tmp_path / "out").glob(".*tmp"))
    assert main(["separate", "--model", str(tmp_path / "nomodel"), str(good), "--out", str(tmp_path)]) == 2


def test_cli_separation_eval(tmp_path, fake_corpus, capsys):
    model = _model_dir(tmp_path)
    rc = main(["separation-eval", "--model", str(model), "--data", str(fake_corpus / "test.jsonl"),
               "--num-mixtures", "2", "--seconds", "0.5", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "| irm |" in out and "| model |" in out
    assert (tmp_path / "r.json").is_file()


def test_fast_dev_run_training(tmp_path, fake_corpus):
    from sonotok.training.train import compose_config, run_training

    torch.set_num_threads(1)
    cfg = compose_config([
        "separation=convtasnet_tiny", "debug=fast", f"out_dir={tmp_path}/run",
        f"data.train={fake_corpus}/train.jsonl", f"data.valid={fake_corpus}/test.jsonl",
        "data.num_workers=0", "data.valid_size=1", "data.segment_seconds=0.5", "data.valid_segment_seconds=0.5",
        "separator.encoder.num_filters=16", "separator.masker.bottleneck=8", "separator.masker.hidden=8",
    ], config_name="separate")
    summary = run_training(cfg)
    assert summary["steps"] == 1


def test_short_training_writes_loadable_model_and_checkpoint(tmp_path, fake_corpus):
    import sonotok
    from sonotok.training.train import compose_config, run_training

    torch.set_num_threads(1)
    cfg = compose_config([
        "separation=convtasnet_tiny", f"out_dir={tmp_path}/run", "trainer.max_steps=2", "logger={}",
        "callbacks.best=null", "callbacks.lr=null", "callbacks.last.every_n_train_steps=1",
        "trainer.enable_progress_bar=false", "threads=1",
        f"data.train={fake_corpus}/train.jsonl", "data.valid=null", "data.num_workers=0", "data.segment_seconds=0.5",
        "separator.encoder.num_filters=16", "separator.masker.bottleneck=8", "separator.masker.hidden=8",
    ], config_name="separate")
    summary = run_training(cfg)
    assert summary["steps"] == 2
    m_dir = sonotok.load(summary["model_dir"])
    m_ckpt = sonotok.load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    x = torch.randn(1, 1, 400)
    with torch.no_grad():
        assert torch.allclose(m_dir(x), m_ckpt(x), atol=1e-6)
    assert m_dir.meta["task"] == "separation" and m_dir.meta["train_steps"] == 2


def test_init_from_copies_a_noncausal_model_into_its_causal_twin(tmp_path):
    from sonotok.training.separation_module import build_separation_module
    from sonotok.training.train import compose_config

    src = _model_dir(tmp_path)
    over = ["separation=convtasnet_tiny", "separator.encoder.num_filters=16", "separator.masker.bottleneck=8",
            "separator.masker.hidden=8", "separator.masker.norm=cln", "separator.masker.causal=true"]
    fresh = build_separation_module(compose_config(over, config_name="separate")).separator
    module = build_separation_module(compose_config(over + [f"init_from={src}"], config_name="separate"))
    import sonotok

    ref = sonotok.load_separator(src)
    assert module.separator.causal and not ref.causal
    for a, b in zip(module.separator.parameters(), ref.parameters()):
        assert torch.equal(a.flatten(), b.flatten())
    assert any(not torch.equal(b.flatten(), c.flatten()) for b, c in zip(ref.parameters(), fresh.parameters()))
