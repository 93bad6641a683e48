from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sonotok

CONF = Path(sonotok.__file__).parent / "conf"
LOSS_CONFIGS = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_loss_config_instantiates_and_keys_match_weights(name):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=None, overrides=[f"+loss={name}", "+codec.sample_rate=16000"])
    modules = instantiate(cfg.loss.modules)
    weights = OmegaConf.to_container(cfg.loss.weights)
    assert all(isinstance(w, (int, float)) for w in weights.values())
    x = 0.1 * torch.randn(1, 1, 8192)  # >= 0.34 s: the PESQ loss aggregates 20 frames
    produced = set()
    for key, m in modules.items():
        if key in ("gen",):
            out = m([torch.zeros(1, 1, 5)])
        elif key == "disc":
            out = m([torch.zeros(1, 1, 5)], [torch.zeros(1, 1, 5)])
        elif key == "feat":
            out = m([[torch.ones(1, 2, 5)]], [[torch.ones(1, 2, 5)]])
        else:
            out = m(0.5 * x, x)
        assert all(torch.isfinite(v) for v in out.values())
        produced |= set(out)
    assert produced <= set(weights), f"keys without weights: {produced - set(weights)}"


def test_weight_override_syntax():
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=None, overrides=["+loss=default", "loss.weights={rec/mel:30}"])
    assert cfg.loss.weights["rec/mel"] == 30
    assert cfg.loss.weights["adv/gen"] == 1.0


def test_compressed_variant_enables_compressed_terms():
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=None, overrides=["+loss=compressed", "+codec.sample_rate=16000"])
    stft = instantiate(cfg.loss.modules.stft)
    assert stft.compressed_complex_weight == 1.0 and stft.sc_weight == 1.0
    assert cfg.loss.modules.mel.sample_rate == 16000
