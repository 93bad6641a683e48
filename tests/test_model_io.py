"""Model directories: save/load round trip and clear errors for corrupt or mismatched files."""

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

import sonotok
from sonotok.errors import ModelLoadError
from sonotok.model_io import save_model
from sonotok.training.train import compose_config


def tiny_cfg(**over):
    ov = ["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=16",
          "quantizer.codebook_size=32", "quantizer.num_codebooks=2", "quantizer.kmeans_init=false"]
    ov += [f"{k}={v}" for k, v in over.items()]
    return compose_config(ov).codec


@pytest.fixture
def model_dir(tmp_path):
    cfg = tiny_cfg()
    codec = instantiate(cfg)
    return save_model(codec, tmp_path / "m", cfg, extra={"note": "test"}), codec


def test_round_trip(model_dir):
    path, codec = model_dir
    loaded = sonotok.load(path)
    x = torch.randn(1, 1, 3000)
    assert torch.equal(loaded.encode(x), codec.eval().encode(x))
    meta = json.loads((path / "meta.json").read_text())
    assert meta["model_id"] == loaded.model_id and meta["note"] == "test"
    assert meta["sample_rate"] == 16000 and meta["num_codebooks"] == 2
    assert not loaded.training


def test_save_replaces_atomically(model_dir):
    path, codec = model_dir
    save_model(codec, path, tiny_cfg())
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="nope"):
        sonotok.load(tmp_path / "nope")


def test_missing_weights(model_dir):
    path, _ = model_dir
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"model.safetensors: missing"):
        sonotok.load(path)


def test_corrupt_weights(model_dir):
    path, _ = model_dir
    (path / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        sonotok.load(path)


def test_mismatched_weights(model_dir, tmp_path):
    path, _ = model_dir
    other_cfg = tiny_cfg(latent_dim=8)
    other = save_model(instantiate(other_cfg), tmp_path / "other", other_cfg)
    (path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="shape"):
        sonotok.load(path)


def test_bad_config(model_dir):
    path, _ = model_dir
    (path / "config.yaml").write_text("_target_: sonotok.models.NoSuchClass\n")
    with pytest.raises(ModelLoadError, match="config.yaml"):
        sonotok.load(path)


def test_checkpoint_not_from_sonotok(tmp_path):
    p = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(ModelLoadError, match="not written by sonotok"):
        sonotok.load(p)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, p)
    with pytest.raises(ModelLoadError, match="not a loadable checkpoint"):
        sonotok.load(p)


# ---------------------------------------------------------------- directories written before the layout move
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


def test_a_codec_directory_saved_by_the_old_layout_loads_and_gives_the_same_codes():
    import numpy as np

    assert "sonotok.codecs.Codec" in (LEGACY / "tiny_seanet_rvq" / "config.yaml").read_text()
    codec = sonotok.load(LEGACY / "tiny_seanet_rvq")
    assert type(codec).__module__ == "sonotok.models.codec"
    wav = torch.from_numpy(np.load(LEGACY / "tiny_seanet_rvq_input.npy"))
    assert torch.equal(codec.encode(wav), torch.from_numpy(np.load(LEGACY / "tiny_seanet_rvq_codes.npy")))


def test_a_separator_directory_saved_by_the_old_layout_loads_and_separates_the_same():
    import numpy as np

    assert "sonotok.codecs.separator.ConvTasNet" in (LEGACY / "tiny_convtasnet" / "config.yaml").read_text()
    model = sonotok.load_separator(LEGACY / "tiny_convtasnet")
    x = torch.from_numpy(np.load(LEGACY / "tiny_convtasnet_input.npy"))
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, torch.from_numpy(np.load(LEGACY / "tiny_convtasnet_output.npy")), rtol=0, atol=1e-6)


def test_load_separator_refuses_a_codec():
    with pytest.raises(ModelLoadError, match="not a separation model"):
        sonotok.load_separator(LEGACY / "tiny_seanet_rvq")


def test_upgrade_targets_rewrites_nested_old_paths_only():
    from sonotok.model_io import upgrade_targets

    cfg = {"_target_": "sonotok.codecs.semantic.XCodec",
           "quantizer": {"_target_": "sonotok.codecs.semantic.SplitResidualVQ", "x": [{"_target_": "sonotok.codecs.Codec"}]},
           "teacher": {"_target_": "sonotok.semantic.ssl.SSLTeacher"}, "other": {"_target_": "sonotok.quantizers.FSQ"}}
    up = upgrade_targets(cfg)
    assert up["_target_"] == "sonotok.models.semantic.XCodec"
    assert up["quantizer"]["_target_"] == "sonotok.quantizers.split.SplitResidualVQ"
    assert up["quantizer"]["x"][0]["_target_"] == "sonotok.models.Codec"
    assert up["teacher"]["_target_"] == "sonotok.semantic.ssl_teacher.SSLTeacher"
    assert up["other"]["_target_"] == "sonotok.quantizers.FSQ"
    assert cfg["_target_"] == "sonotok.codecs.semantic.XCodec"  # the input is not modified
