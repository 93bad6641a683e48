"""``init_from=DIR init_override={...}``: fine-tune a model directory with changed training-time arguments."""

import pytest
import torch
from omegaconf import OmegaConf

from sonotok.errors import ModelLoadError
from sonotok.model_io import load_model, save_model
from sonotok.quantizers import FSQ
from sonotok.training.train import build_codec, compose_config


@pytest.fixture
def fsq_dir(tmp_path):
    cfg = compose_config(["experiment=tiny", "quantizer=fsq", "quantizer.levels=[5,5]", "quantizer.num_codebooks=4",
                          "latent_dim=8"])
    from hydra.utils import instantiate

    torch.manual_seed(0)
    codec = instantiate(cfg.codec)
    save_model(codec, tmp_path / "m", OmegaConf.to_container(cfg.codec, resolve=True))
    return tmp_path / "m"


def _cfg(d, override=None):
    return OmegaConf.create({"init_from": str(d), "init_override": override, "data": None})


def test_override_changes_the_quantizer_and_keeps_the_weights(fsq_dir):
    ref = load_model(fsq_dir)
    codec, model_config = build_codec(_cfg(fsq_dir, {"quantizer": {"group_dropout": 1.0, "min_groups": 2}}))
    assert isinstance(codec.quantizer, FSQ) and codec.quantizer.group_dropout == 1.0
    assert codec.training
    assert model_config["quantizer"]["group_dropout"] == 1.0  # checkpoints and the export carry it
    for (k, a), (k2, b) in zip(sorted(ref.state_dict().items()), sorted(codec.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k
    wav = torch.randn(8, 1, 3200)
    codes = codec.quantizer(codec.encoder(wav)).codes
    assert (codes == -1).any(), "group dropout is on in the fine-tuned model"
    codec.eval()
    assert torch.equal(codec.encode(wav), ref.encode(wav))  # inference unchanged


def test_without_override_the_directory_config_is_used(fsq_dir):
    codec, model_config = build_codec(_cfg(fsq_dir))
    assert codec.quantizer.group_dropout == 0.0 and "group_dropout" not in (model_config["quantizer"] or {}) or \
        model_config["quantizer"].get("group_dropout", 0.0) == 0.0


def test_an_override_that_changes_shapes_is_a_load_error(fsq_dir):
    with pytest.raises(ModelLoadError, match="init_override"):
        build_codec(_cfg(fsq_dir, {"quantizer": {"num_codebooks": 2}}))
