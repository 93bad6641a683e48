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


# ---------------------------------------------------------------- only allow-listed targets are built (M1, M2)
def _plant(model_dir, mutate):
    """Rewrite the model directory's config.yaml with ``mutate(plain config dict)``."""
    import yaml

    cfg_path = model_dir / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    mutate(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg))


def test_a_nested_numpy_save_target_is_refused_and_writes_nothing(model_dir, tmp_path):
    path, _ = model_dir
    victim = tmp_path / "pwned.npy"
    _plant(path, lambda c: c["encoder"].update(
        extra={"_target_": "numpy.save", "file": str(victim), "arr": [1, 2, 3]}))
    with pytest.raises(ModelLoadError, match=r"config\.yaml: encoder\.extra\._target_ = 'numpy\.save' is not allowed"):
        sonotok.load(path)
    assert not victim.exists()


def test_builtins_print_anywhere_is_refused_and_prints_nothing(model_dir, capsys):
    path, _ = model_dir
    _plant(path, lambda c: c["quantizer"].update(
        codebook_size={"_target_": "builtins.print", "_args_": ["pwned"]}))
    with pytest.raises(ModelLoadError, match=r"quantizer\.codebook_size\._target_ = 'builtins\.print'"):
        sonotok.load(path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("target", ["os.system", "torch.save", "sonotok.model_io.save_model",
                                    "sonotok.data.audio.save_audio", "sonotok.models.codec.os.system",
                                    "sonotok.models.codec.torch.save", "sonotok.cli.__main__.main",
                                    "sonotok.training.codec_module.CodecLightningModule",
                                    "sonotok.models.codec.nn.Module"])
def test_list_nested_and_partial_targets_are_refused(model_dir, target, tmp_path):
    path, _ = model_dir
    bad = {"_target_": target, "_partial_": True, "_args_": [str(tmp_path / "x")]}
    _plant(path, lambda c: c["decoder"].update(blocks=[1, {"deeper": [bad]}]))
    with pytest.raises(ModelLoadError, match=r"decoder\.blocks\[1\]\.deeper\[0\]\._target_ = '" + target.replace(".", r"\.")):
        sonotok.load(path)
    assert not (tmp_path / "x").exists()


def test_a_refused_target_in_a_checkpoint_config_names_the_checkpoint_and_runs_nothing(tmp_path, capsys):
    cfg = tiny_cfg()
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["encoder"]["x"] = {"_target_": "builtins.print", "_args_": ["pwned"]}
    p = tmp_path / "evil_cfg.ckpt"
    torch.save({"state_dict": {}, "sonotok_model_config": plain}, p)
    with pytest.raises(ModelLoadError, match=r"evil_cfg\.ckpt \[sonotok_model_config\]: encoder\.x\._target_"):
        sonotok.load(p)
    assert "pwned" not in capsys.readouterr().out


def test_a_config_that_builds_a_non_module_is_a_model_load_error(model_dir):
    path, _ = model_dir
    (path / "config.yaml").write_text("encoder: {a: 1}\n")  # no top-level _target_: instantiate gives a dict
    with pytest.raises(ModelLoadError, match=r"not a model \(nn.Module\) \(it has no top-level _target_\)"):
        sonotok.load(path)
    (path / "config.yaml").write_text("_target_: sonotok.models.Codec\n_partial_: true\n")
    with pytest.raises(ModelLoadError, match=r"config\.yaml: the config builds a \w+, not a model"):
        sonotok.load(path)


def test_the_allow_list_still_builds_every_shipped_preset():
    from sonotok.model_io import build_from_config

    experiments = sorted(p.stem for p in (Path(sonotok.__file__).parent / "conf" / "experiment").glob("*.yaml"))
    built = []
    for exp in [None, *experiments]:
        cfg = compose_config([f"experiment={exp}"] if exp else [])
        if "teacher" in str(cfg.codec):  # teachers read pretrained weights from disk: check the targets only
            from omegaconf import OmegaConf

            from sonotok.model_io import check_targets, upgrade_targets

            check_targets(upgrade_targets(OmegaConf.to_container(cfg.codec, resolve=True)), exp)
            continue
        built.append(type(build_from_config(cfg.codec, source=str(exp))).__name__)
    for sep in ("convtasnet_tiny", "convtasnet_8k", "convtasnet_causal_8k"):
        cfg = compose_config([f"separation={sep}"], config_name="separate")
        built.append(type(build_from_config(cfg.separator, source=sep)).__name__)
    assert built.count("Codec") >= 5 and built.count("ConvTasNet") == 3, built


def test_a_latent_separator_may_hold_its_codec_model_directory(model_dir):
    from sonotok.model_io import build_from_config

    path, codec = model_dir
    cfg = compose_config(["separation=codec_latent_tiny", f"codec_model={path}",
                          "separator.masker.num_filters=16"], config_name="separate")
    sep = build_from_config(cfg.separator)
    assert type(sep).__name__ == "CodecLatentSeparator"


def test_a_model_directory_that_loads_itself_is_refused(model_dir):
    path, _ = model_dir
    _plant(path, lambda c: c.update(encoder={"_target_": "sonotok.load", "path_or_name": str(path)}))
    with pytest.raises(ModelLoadError, match="loads itself"):
        sonotok.load(path)


# ---------------------------------------------------------------- checkpoints: device and model id (M3, M4)
def _write_ckpt(path, codec, cfg, step):
    from omegaconf import OmegaConf

    torch.save({"state_dict": {f"codec.{k}": v for k, v in codec.state_dict().items()}, "global_step": step,
                "sonotok_model_config": OmegaConf.to_container(cfg, resolve=True), "sonotok_model_prefix": "codec."},
               path)
    return path


def test_checkpoint_is_moved_to_map_location(tmp_path):
    cfg = tiny_cfg()
    codec = instantiate(cfg)
    p = _write_ckpt(tmp_path / "last.ckpt", codec, cfg, 10)
    on_cpu = sonotok.load(p, map_location="cpu")
    assert {t.device.type for t in on_cpu.state_dict().values()} == {"cpu"}
    on_meta = sonotok.load(p, map_location="meta")  # a device without a GPU: the model must end up there
    assert {t.device.type for t in on_meta.parameters()} == {"meta"}
    assert {t.device.type for t in on_meta.buffers()} <= {"meta"}
    x = torch.randn(1, 1, 3000)
    assert torch.equal(on_cpu.encode(x), codec.eval().encode(x))


@pytest.mark.gpu
def test_checkpoint_and_model_directory_load_onto_cuda(tmp_path, model_dir):
    path, codec = model_dir
    cfg = tiny_cfg()
    p = _write_ckpt(tmp_path / "last.ckpt", codec, cfg, 3)
    for src in (p, path):
        m = sonotok.load(src, map_location="cuda")
        assert {t.device.type for t in m.parameters()} == {"cuda"}
        x = torch.randn(1, 1, 3000)
        assert m.encode(x.cuda()).shape[-1] == codec.num_frames(3000)


def test_checkpoint_model_id_tells_training_steps_apart(tmp_path):
    cfg = tiny_cfg()
    codec = instantiate(cfg)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = sonotok.load(_write_ckpt(tmp_path / "a" / "last.ckpt", codec, cfg, 10))
    with torch.no_grad():
        next(codec.parameters()).add_(0.01)  # training moved on
    later = sonotok.load(_write_ckpt(tmp_path / "b" / "last.ckpt", codec, cfg, 20))
    same = sonotok.load(_write_ckpt(tmp_path / "copy.ckpt", codec, cfg, 20))
    assert first.model_id != later.model_id
    assert first.model_id.startswith("tiny_seanet-step10-") and later.model_id.startswith("tiny_seanet-step20-")
    assert later.model_id == same.model_id  # same weights, same id, whatever the file is called
