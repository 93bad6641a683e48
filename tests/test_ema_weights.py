"""EMA of the weights (issue 15): ``callbacks/ema=default`` adds :class:`sonotok.training.base.EMAWeights`
(Lightning's ``EMAWeightAveraging``). One update per generator step in the GAN's manual optimization,
validation scores the average, export_dir receives it, resume continues it exactly, ``init_from`` starts it
from the loaded weights."""

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from omegaconf import OmegaConf

import sonotok
from sonotok.model_io import save_model
from sonotok.training import train
from sonotok.training.base import EMAWeights
from sonotok.training.train import build_module, compose_config, run_training

TINY = ["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=16",
        "quantizer.codebook_size=32", "quantizer.num_codebooks=2", "quantizer.kmeans_init=false"]


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = tmp_path_factory.mktemp("ema_voices")
    rng = np.random.default_rng(0)
    t = np.arange(12000) / 16000
    for i in range(4):
        x = sum(np.sin(2 * np.pi * (120 + 30 * i) * k * t + rng.uniform(0, 6)) / k for k in range(1, 10))
        sf.write(root / f"v{i}.wav", (0.1 * x).astype(np.float32), 16000)
    return root


def overrides(folder, out_dir, steps, *more):
    return [*TINY, "discriminator=tiny", "schedule.disc_start_step=1", "schedule.warmup_steps=0",
            f"trainer.max_steps={steps}",
            "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
            "callbacks.last.every_n_train_steps=2", "logger={}", "data=folder", f"data.train={folder}",
            f"data.valid={folder}", "data.num_workers=0", "data.batch_size=2", "data.segment_seconds=0.25",
            "data.valid_max_seconds=0.25", f"out_dir={out_dir}", "threads=1", *more]


def ema_overrides(decay=0.5, start_step=0):
    return ["callbacks/ema=default", f"callbacks.ema.decay={decay}", f"callbacks.ema.start_step={start_step}"]


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def assert_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")


def differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_off_by_default_and_the_override_builds_it():
    assert "ema" not in compose_config(["experiment=fast_16k"]).callbacks
    cfg = compose_config(["experiment=fast_16k", *ema_overrides(0.9995, 1000)])
    cb = instantiate(cfg.callbacks.ema)
    assert isinstance(cb, EMAWeights) and isinstance(cb, EMAWeightAveraging)
    assert (cb.decay, cb.start_step) == (0.9995, 1000)
    assert any(isinstance(c, EMAWeights) for c in train._instantiate_mapping(cfg.callbacks))
    with pytest.raises(ValueError, match="decay 1.5"):
        EMAWeights(decay=1.5)
    with pytest.raises(ValueError, match="start_step -1"):
        EMAWeights(start_step=-1)


class Recorder(Callback):
    """Raw weights at the start and after every step; the weights validation runs with."""

    def __init__(self):
        self.raw, self.val = [], {}

    def on_train_start(self, trainer, pl_module):
        self.raw.append(params(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw.append(params(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val[int(pl_module.gen_steps)] = params(pl_module)


def test_one_update_per_generator_step_and_validation_scores_the_average(voices, tmp_path):
    decay, start, steps = 0.5, 2, 5
    cfg = compose_config(overrides(voices, tmp_path, steps))
    module = build_module(cfg)
    ema, rec = EMAWeights(decay=decay, start_step=start), Recorder()
    trainer = instantiate(cfg.trainer, callbacks=[ema, rec], logger=False, enable_checkpointing=False,
                          default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=instantiate(cfg.data))
    assert module.gen_steps == steps == trainer.global_step  # the discriminator steps are not counted
    assert module.gan_active(), "both optimizers stepped"

    expected, avg = [rec.raw[0]], rec.raw[0]  # the average starts from the weights at the start of fit
    for t in range(steps):
        w = rec.raw[t + 1]
        avg = w if t < start else {k: decay * avg[k] + (1 - decay) * w[k] for k in w}
        expected.append(avg)
    averaged = params(ema._average_model.module)
    assert_equal(averaged, expected[steps])  # the same float32 arithmetic as torch's get_ema_avg_fn
    assert differs(averaged, rec.raw[steps])
    assert sorted(rec.val) == [2, 4]
    for step, weights in rec.val.items():
        assert_equal(weights, expected[step])
    assert_equal(params(module), averaged)  # after fit the module holds the average
    assert int(module.gen_steps) == steps  # buffers follow the raw model (not averaged)


def test_export_dir_holds_the_average(voices, tmp_path, monkeypatch):
    seen = {}
    fit = train.fit_from_config

    def spy(cfg, build):
        out = fit(cfg, build)
        seen["trainer"] = out[1]
        return out

    monkeypatch.setattr(train, "fit_from_config", spy)
    summary = run_training(compose_config(overrides(voices, tmp_path, 4, *ema_overrides())))
    assert summary["steps"] == 4
    (ema,) = [c for c in seen["trainer"].callbacks if isinstance(c, EMAWeights)]
    averaged = params(ema._average_model.module.codec)
    exported = params(sonotok.load(tmp_path / "model"))
    assert_equal(exported, averaged)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    raw = {k[len("codec."):]: v for k, v in ckpt["current_model_state"].items()
           if k.startswith("codec.") and k[len("codec."):] in exported}
    assert raw.keys() == exported.keys() and differs(exported, raw), "the export is not the raw weights"
    assert_equal({k[len("codec."):]: v for k, v in ckpt["state_dict"].items()
                  if k.startswith("codec.") and k[len("codec."):] in exported}, exported)


def test_fine_tuning_starts_the_average_from_the_loaded_weights(voices, tmp_path, monkeypatch):
    cfg = compose_config(TINY)
    codec = instantiate(cfg.codec)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in codec.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    save_model(codec, tmp_path / "imported", OmegaConf.to_container(cfg.codec, resolve=True))
    loaded = params(sonotok.load(tmp_path / "imported"))

    seen = {}
    fit = train.fit_from_config
    monkeypatch.setattr(train, "fit_from_config", lambda c, b: seen.setdefault("out", fit(c, b)))
    run_training(compose_config(overrides(voices, tmp_path / "run", 1, *ema_overrides(0.5),
                                          f"init_from={tmp_path / 'imported'}")))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    raw = {k[len("codec."):]: v for k, v in ckpt["current_model_state"].items() if k[len("codec."):] in loaded}
    assert differs(raw, loaded), "one step changed the weights"
    (ema,) = [c for c in seen["out"][1].callbacks if isinstance(c, EMAWeights)]
    averaged = params(ema._average_model.module.codec)
    assert_equal({k: averaged[k] for k in loaded}, {k: 0.5 * loaded[k] + (1 - 0.5) * raw[k] for k in loaded})


EMA_RESUME = ["quantizer.quantizer_dropout=true", *ema_overrides(0.7, 3)]  # the resumes cross the start step


@pytest.fixture(scope="module")
def whole_ema(voices, tmp_path_factory):
    """The uninterrupted 6-step EMA run (4 files, batch 2: 2 batches per epoch; checkpoints every 2 steps)."""
    out = tmp_path_factory.mktemp("whole_ema")
    run_training(compose_config(overrides(voices, out, 6, *EMA_RESUME)))
    return out


@pytest.mark.parametrize("stop", [1, 3], ids=["end-of-run-before-any-periodic-checkpoint", "between-checkpoints"])
def test_resumed_run_ends_with_the_average_of_an_uninterrupted_one(voices, whole_ema, tmp_path, stop):
    part = tmp_path / "part"
    # stopped by max_steps after step `stop`, between two periodic checkpoints: its final step is saved at the
    # end of its last batch (raw weights as current_model_state, the average as state_dict), the epoch still
    # open, and a run continued from it with a larger max_steps is the uninterrupted one
    run_training(compose_config(overrides(voices, part, stop, *EMA_RESUME)))
    last = part / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == stop and "current_model_state" in saved
    if stop == 1:  # re-running the finished command: nothing trains, last.ckpt stays, the export is the average
        before, model = last.read_bytes(), params(sonotok.load(part / "model"))
        again = run_training(compose_config(overrides(voices, part, stop, *EMA_RESUME)))
        assert again["batches_this_run"] == 0 and last.read_bytes() == before
        assert_equal(params(sonotok.load(part / "model")), model)
    summary = run_training(compose_config(overrides(voices, part, 6, *EMA_RESUME)))
    assert summary["resumed_from"] == str(last) and summary["batches_this_run"] == 6 - stop

    a, b = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for d in (part, whole_ema))
    assert a["global_step"] == b["global_step"] == 6
    for key in ("state_dict", "current_model_state", "averaging_state"):  # average, raw weights, n_averaged
        assert_equal(a[key], b[key])
    assert int(a["averaging_state"]["n_averaged"]) == 4  # the copies of steps 1-3 count 1, then 3 averages
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, st in oa["state"].items():
            for name, v in st.items():
                torch.testing.assert_close(v, ob["state"][pid][name], rtol=0, atol=0)
    assert [s["_last_lr"] for s in a["lr_schedulers"]] == [s["_last_lr"] for s in b["lr_schedulers"]]
    assert_equal(params(sonotok.load(part / "model")), params(sonotok.load(whole_ema / "model")))
