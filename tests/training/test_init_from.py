"""``init_from=DIR``: fine-tune a model directory (e.g. one written by ``sonotok import``) instead of the
preset's codec node: the codec is built from DIR/config.yaml with DIR's weights."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sonotok
from sonotok.errors import ModelLoadError
from sonotok.model_io import save_model
from sonotok.training.train import build_module, compose_config, run_training

SEANET = ["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=16",
          "quantizer.codebook_size=32", "quantizer.num_codebooks=2", "quantizer.kmeans_init=false"]


@pytest.fixture
def model_dir(tmp_path):
    cfg = compose_config(SEANET)
    codec = instantiate(cfg.codec)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # weights no fresh init reproduces
        for p in codec.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    out = tmp_path / "imported"
    save_model(codec, out, OmegaConf.to_container(cfg.codec, resolve=True))
    return out


def test_codec_is_the_directory_s_model_at_step_0(model_dir):
    # the preset is the spectral `tiny`; the directory holds a SEANet codec: the directory wins
    module = build_module(compose_config(["experiment=tiny", f"init_from={model_dir}"]))
    saved = sonotok.load(model_dir)
    assert type(module.codec) is type(saved)
    assert type(module.codec.encoder).__name__ == type(saved.encoder).__name__ != "STFTConvNeXtEncoder"
    own, ref = module.codec.state_dict(), saved.state_dict()
    assert own.keys() == ref.keys()
    assert all(torch.equal(own[k], ref[k]) for k in ref)
    assert module.codec.training, "the fine-tuned codec trains (not left in eval mode)"
    assert module.model_config == OmegaConf.to_container(OmegaConf.load(model_dir / "config.yaml"))


def test_fine_tuning_run_saves_the_directory_s_architecture(model_dir, synth_folder, tmp_path):
    out = tmp_path / "run"
    over = ["experiment=tiny", f"init_from={model_dir}", "trainer.max_steps=1", "logger={}", "data=folder", f"data.train={synth_folder}",
            f"data.valid={synth_folder}", "data.num_workers=0", "data.batch_size=2", "data.segment_seconds=0.5",
            "data.valid_max_seconds=0.5", f"out_dir={out}", "threads=1"]
    summary = run_training(compose_config(over))
    assert summary["steps"] == 1
    tuned = sonotok.load(out / "model")
    saved = sonotok.load(model_dir)
    assert type(tuned.encoder) is type(saved.encoder)
    assert tuned.state_dict().keys() == saved.state_dict().keys()


def test_init_from_rejects_a_rate_mismatch_and_a_missing_directory(model_dir, tmp_path):
    with pytest.raises(ValueError, match="16000 Hz but data.sample_rate is 24000"):
        build_module(compose_config(["experiment=encodec_like_24k", f"init_from={model_dir}"]))
    with pytest.raises(ModelLoadError, match="nope"):
        build_module(compose_config(["experiment=tiny", f"init_from={tmp_path / 'nope'}"]))
