"""Every config group option instantiates; presets compose to the documented stream parameters."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

import sonotok
from sonotok.training.train import CONF_DIR, build_module, compose_config

CONF = Path(CONF_DIR)


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_conf_dir_is_inside_the_package():
    assert Path(sonotok.__file__).parent / "conf" == CONF.resolve()
    assert (CONF / "train.yaml").is_file()


@pytest.mark.parametrize("group", ["encoder", "decoder", "quantizer"])
def test_model_groups_instantiate(group):
    for opt in options(group):
        cfg = compose_config([f"{group}={opt}", "latent_dim=16", "encoder.n_filters=4", "decoder.n_filters=4"]
                             if group != "encoder" and group != "decoder" else [f"{group}={opt}", "latent_dim=16"])
        obj = instantiate(cfg[group])
        assert obj is not None, f"{group}={opt}"


@pytest.mark.parametrize("opt", options("discriminator"))
def test_discriminators_instantiate(opt):
    cfg = compose_config([f"discriminator={opt}"])
    node = cfg.get("discriminator")
    if opt == "none":
        assert node is None
    else:
        assert instantiate(node) is not None


@pytest.mark.parametrize("group", ["loss", "optim", "trainer", "callbacks", "logger", "data", "codec"])
def test_other_groups_compose(group, tmp_path):
    for opt in options(group):
        over = [f"{group}={opt}", f"out_dir={tmp_path}"]
        if group == "data":
            over += [f"data.train={tmp_path}"]
        cfg = compose_config(over)
        assert cfg[group] is not None
        if group == "loss":  # every loss module of every option builds
            from hydra.utils import instantiate

            mods = {k: instantiate(v) for k, v in cfg.loss.modules.items() if v is not None}
            assert mods
        if group == "trainer" and opt == "cpu_ddp":
            assert cfg.trainer.strategy == "ddp_fork" and cfg.trainer.accelerator == "cpu"


EXPECTED = {
    # preset: (sample_rate, frame_rate, max kbps)
    "tiny": (16000, None, 4.0),
    "encodec_like_24k": (24000, 75.0, 6.0),
    "hificodec_grvq_16k": (16000, 50.0, 2.0),
    "simvq_16k": (16000, 50.0, 0.65),
}


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_presets_build(preset):
    cfg = compose_config([f"experiment={preset}"])
    module = build_module(cfg)
    codec = module.codec
    sr, fr, kbps = EXPECTED[preset]
    assert codec.sample_rate == sr
    if fr is not None:
        assert codec.frame_rate == fr
    assert codec.bitrate() / 1000 <= kbps + 1e-9
    assert cfg.data.sample_rate == sr, "data must be read at the codec's rate"


def test_every_experiment_is_tested():
    assert set(options("experiment")) >= set(EXPECTED)
