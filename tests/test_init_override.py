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


@pytest.fixture
def vocos_dir(tmp_path):
    cfg = compose_config(["experiment=fast_16k", "encoder.width=32", "decoder.width=32", "encoder.num_blocks=1",
                          "encoder.num_post_blocks=1", "decoder.num_pre_blocks=1", "decoder.num_blocks=1",
                          "latent_dim=8", "quantizer.num_codebooks=2"])
    from hydra.utils import instantiate

    torch.manual_seed(0)
    codec = instantiate(cfg.codec)
    with torch.no_grad():  # trained-looking layer scales, so an identity start is not trivially true
        for n, p in codec.named_parameters():
            if n.endswith("gamma"):
                p.fill_(0.5)
    save_model(codec, tmp_path / "v", OmegaConf.to_container(cfg.codec, resolve=True))
    return tmp_path / "v"


def test_grow_adds_identity_blocks_and_keeps_the_output(vocos_dir):
    ref = load_model(vocos_dir)
    cfg = _cfg(vocos_dir, {"decoder": {"num_blocks": 3, "num_pre_blocks": 2}})
    cfg.init_grow = True
    codec, model_config = build_codec(cfg)
    assert model_config["decoder"]["num_blocks"] == 3
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in codec.parameters()) > n_ref
    codec.eval()
    wav = torch.randn(2, 1, 4000)
    with torch.no_grad():
        codes = codec.encode(wav)
        assert torch.equal(codes, ref.encode(wav))
        torch.testing.assert_close(codec.decode(codes), ref.decode(codes), rtol=0, atol=1e-6)
    # the new blocks learn: their (zero) layer scale gets a gradient
    codec.train()
    z = codec.quantizer(codec.encoder(wav)).z_q
    codec.decoder(z).pow(2).mean().backward()
    grads = [p.grad for n, p in codec.named_parameters() if n.endswith("gamma") and p.grad is not None
             and float(p.detach().abs().max()) == 0.0]
    assert grads and all(float(g.abs().max()) > 0 for g in grads)


def test_grow_is_refused_without_init_grow(vocos_dir):
    with pytest.raises(ModelLoadError, match="missing"):
        build_codec(_cfg(vocos_dir, {"decoder": {"num_blocks": 3}}))
