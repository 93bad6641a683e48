"""Training runs: fast_dev_run of every preset, GAN path, exact resume, saved model round trip."""

from pathlib import Path

import pytest
import torch

import sonotok
from sonotok.training.train import compose_config, resolve_resume, run_training


def data_overrides(folder, out_dir):
    return [
        "data=folder",
        f"data.train={folder}",
        f"data.valid={folder}",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.segment_seconds=0.5",
        "data.valid_max_seconds=0.5",
        f"out_dir={out_dir}",
        "threads=1",
    ]


PRESETS = ["tiny", "encodec_like_24k", "hificodec_grvq_16k", "simvq_16k"]


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_dev_run_of_each_preset(preset, synth_folder, tmp_path):
    over = [f"experiment={preset}", "debug=fast", *data_overrides(synth_folder, tmp_path)]
    if preset != "tiny":
        over.append("schedule.disc_start_step=0")  # exercise the GAN step too
    summary = run_training(compose_config(over))
    assert summary["steps"] == 1


def small(folder, out_dir, steps, extra=()):
    return compose_config([
        "experiment=tiny_seanet",
        "encoder.n_filters=4",
        "decoder.n_filters=4",
        "latent_dim=16",
        "quantizer.codebook_size=64",
        "quantizer.num_codebooks=2",
        "quantizer.kmeans_init=false",
        "discriminator=tiny",
        "schedule.disc_start_step=2",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "callbacks.last.every_n_train_steps=3",
        *data_overrides(folder, out_dir),
        *extra,
    ])


def test_interrupted_training_resumes_to_the_same_step(synth_folder, tmp_path):
    out = tmp_path / "run"
    # the "interrupted" run stops at step 3 (as if killed right after its checkpoint)
    s1 = run_training(small(synth_folder, out, 3))
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert int(state["state_dict"]["gen_steps"]) == 3 == s1["steps"]
    # re-running the same command with a larger budget resumes from there (resume: auto)
    cfg = small(synth_folder, out, 12)
    assert resolve_resume(cfg) == str(ckpt)
    s2 = run_training(cfg)
    # max_steps, global_step and gen_steps all count generator steps (one per batch), GAN on or off
    assert s2["resumed_from"] == str(ckpt)
    assert s2["steps"] == 12
    assert s2["batches_this_run"] == 12 - 3, "the resumed run must not redo the first 3 steps"
    final = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert int(final["state_dict"]["gen_steps"]) == s2["steps"]
    assert final["global_step"] == s2["global_step"] == 12


def test_saved_model_reloads_and_encodes_identically(synth_folder, tmp_path):
    out = tmp_path / "run"
    run_training(small(synth_folder, out, 3))
    model_dir = out / "model"
    assert (model_dir / "config.yaml").is_file() and (model_dir / "model.safetensors").is_file()
    codec = sonotok.load(model_dir)
    again = sonotok.load(str(model_dir))
    from_ckpt = sonotok.load(out / "checkpoints" / "last.ckpt")
    wav = torch.randn(1, 1, 4000) * 0.1
    codes = codec.encode(wav)
    assert codes.shape == (1, 2, 4000 // codec.hop_length + (4000 % codec.hop_length > 0))
    assert torch.equal(codes, again.encode(wav))
    assert torch.equal(codes, from_ckpt.encode(wav))
    torch.testing.assert_close(codec.decode(codes), again.decode(codes))
    assert codec.model_id.startswith("tiny_seanet-")
    assert codec.model_id == again.model_id


def test_resume_from_missing_checkpoint_is_a_clear_error(synth_folder, tmp_path):
    cfg = small(synth_folder, tmp_path, 1, extra=[f"resume={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        resolve_resume(cfg)


def test_train_entry_point_runs_from_the_command_line(synth_folder, tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    over = ["experiment=tiny", "debug=fast", *data_overrides(synth_folder, tmp_path)]
    for cmd in ([sys.executable, str(repo / "train.py"), *over], [sys.executable, "-m", "sonotok.cli", "train", *over]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]


def test_time_based_cosine_follows_the_clock():
    from sonotok.training.codec_module import _lr_lambda

    clock = {"f": 0.0}
    fn = _lr_lambda(2, "cosine", 10, 0.1, time_fraction=lambda: clock["f"])
    assert fn(0) == pytest.approx(0.5)  # warm-up stays step-based
    assert fn(500) == pytest.approx(1.0)  # no time elapsed: full rate whatever the step count
    clock["f"] = 0.5
    assert fn(3) == pytest.approx(0.1 + 0.9 * 0.5)
    clock["f"] = 1.7  # past the budget: the floor
    assert fn(3) == pytest.approx(0.1)
    # without a clock the cosine runs over total_steps
    assert _lr_lambda(0, "cosine", 10, 0.1)(10) == pytest.approx(0.1)


def test_max_time_minutes_parses_lightning_formats():
    from sonotok.training.train import max_time_minutes

    assert max_time_minutes("00:00:15:00") == pytest.approx(15)
    assert max_time_minutes("01:02:03:30") == pytest.approx(1440 + 123.5)
    assert max_time_minutes({"hours": 1, "minutes": 30}) == pytest.approx(90)
    assert max_time_minutes(None) is None
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        max_time_minutes("15:00")


def test_schedule_over_max_time_decays_and_keeps_its_clock_in_checkpoints(synth_folder, tmp_path):
    out = tmp_path / "run"
    # a 0.05-minute horizon (3 s) is long gone after a few steps: the last steps run at the floor
    extra = ["schedule.lr_decay=cosine", "schedule.warmup_steps=0", "schedule.min_lr_ratio=0.2",
             "schedule.total_minutes=max_time", "trainer.max_time=00:00:00:03", "schedule.disc_start_step=100"]
    cfg = small(synth_folder, out, 400, extra=extra)
    from sonotok.training.train import build_module

    module = build_module(cfg)
    assert module.total_minutes == pytest.approx(0.05)
    run_training(cfg)
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["sonotok_train_seconds"] > 1.0
    # the learning rate of the checkpointed step is the cosine at the clock saved with it
    import math

    frac = min(1.0, state["sonotok_train_seconds"] / 3.0)
    expected = cfg.optim.generator.lr * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * frac)))
    lr = state["lr_schedulers"][0]["_last_lr"][0]
    assert lr == pytest.approx(expected, rel=1e-6)
    assert lr < 0.9 * cfg.optim.generator.lr
    # a resumed run carries the clock on (it does not restart the decay from zero)
    module.on_load_checkpoint(state)
    assert module.train_seconds == state["sonotok_train_seconds"]
