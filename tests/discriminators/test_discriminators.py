from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

import sonotok
from sonotok.discriminators import (
    CombinedDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from sonotok.losses.adversarial import (
    DiscriminatorAdversarialLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
)

CONF = Path(sonotok.__file__).parent / "conf"


def tiny_discriminators():
    return {
        "mpd": MultiPeriodDiscriminator(periods=(2, 3), channels=4, max_channels=8, num_layers=2),
        "msd": MultiScaleDiscriminator(
            num_scales=2, channels=4, max_channels=16, num_downsample=2, kernel_size=11
        ),
        "msstft": MultiScaleSTFTDiscriminator(n_ffts=(128, 256), filters=4, max_filters=8, dilations=(1, 2)),
        "mrd": MultiResolutionDiscriminator(resolutions=[(128, 32, 128), (256, 64, 256)], channels=4),
    }


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["mpd", "msd", "msstft", "mrd"])
@pytest.mark.parametrize("length", [1001, 2049])
def test_output_structure_for_odd_lengths(name, length):
    d = tiny_discriminators()[name]
    assert n_params(d) < 10_000
    x = torch.randn(2, 1, length)
    logits, features = d(x)
    assert isinstance(logits, list) and isinstance(features, list)
    assert len(logits) == len(features) == len(d.discriminators)
    for lg, fs in zip(logits, features):
        assert lg.shape[:2] == (2, 1), lg.shape
        assert isinstance(fs, list) and len(fs) >= 3
        assert all(f.shape[0] == 2 for f in fs)
        assert fs[-1] is lg or torch.equal(fs[-1], lg)


def test_weight_norm_parametrization():
    d = tiny_discriminators()["mpd"]
    assert any("parametrizations.weight.original0" in n for n, _ in d.named_parameters())
    sn = MultiPeriodDiscriminator(
        periods=(2,), channels=4, max_channels=8, num_layers=2, use_spectral_norm=True
    )
    assert any("parametrizations.weight.original" in n for n, _ in sn.named_parameters())
    assert not any("original0" in n for n, _ in sn.named_parameters())


def test_rejects_bad_shape():
    d = tiny_discriminators()["mpd"]
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        d(torch.randn(2, 2, 1000))


def test_combined_concatenates_and_backpropagates():
    subs = tiny_discriminators()
    combined = CombinedDiscriminator({**subs, "off": None})
    x = torch.randn(2, 1, 1601)
    fake = (0.5 * torch.randn(2, 1, 1601)).requires_grad_(True)
    real_logits, real_feats = combined(x)
    expected = sum(len(s.discriminators) for s in subs.values())
    assert len(real_logits) == len(real_feats) == len(combined.names) == expected
    assert combined.names[:3] == ["mpd.0", "mpd.1", "msd.0"]

    # discriminator step
    fake_logits, _ = combined(fake.detach())
    d_loss = DiscriminatorAdversarialLoss("hinge")(real_logits, fake_logits)["adv/disc"]
    d_loss.backward()
    assert all(p.grad is not None for p in combined.parameters())
    combined.zero_grad()

    # generator step
    fake_logits, fake_feats = combined(fake)
    g = GeneratorAdversarialLoss("lsgan")(fake_logits)["adv/gen"]
    f = FeatureMatchingLoss()(real_feats, fake_feats)["adv/feat"]
    (g + f).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_combined_accepts_list():
    combined = CombinedDiscriminator([tiny_discriminators()["mpd"]])
    logits, _ = combined(torch.randn(1, 1, 999))
    assert len(logits) == 2


DISC_CONFIGS = sorted(p.stem for p in (CONF / "discriminator").glob("*.yaml"))


@pytest.mark.parametrize("name", DISC_CONFIGS)
def test_discriminator_configs_instantiate(name):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=None, overrides=[f"+discriminator={name}", "+codec.sample_rate=16000"])
    if name == "none":
        assert cfg.discriminator is None
        return
    d = instantiate(cfg.discriminator)
    assert isinstance(d, CombinedDiscriminator)
    if name == "tiny":
        assert n_params(d) < 10_000
        logits, features = d(torch.randn(1, 1, 1601))
        assert len(logits) == len(features) > 0
