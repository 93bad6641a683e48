"""Exact resume: an interrupted run resumed from its checkpoint ends with the weights of an uninterrupted one.

Compared by weights (codec, discriminator, codebook buffers), optimizer and scheduler state, not counters.
The run uses the GAN (from step 2), quantizer dropout (training random numbers), validation between steps
(which draws random numbers for its loader) and a checkpoint in the middle of an epoch (6 files, batch 2:
3 batches per epoch, the checkpoint after step 4 is batch 1 of epoch 1).

A run that stops between two periodic checkpoints (``max_steps``, ``max_epochs``, ``max_time``) saves its final
step (``ResumableCheckpoint``) at the end of its last batch, and a run continued from that ``last.ckpt`` with a
larger limit is bit-identical too; re-running a finished command changes nothing.
"""

import warnings

import pytest
import torch
from lightning.pytorch.callbacks import timer as lightning_timer

from sonotok.training.train import build_module, compose_config, resolve_resume, run_training


def data_overrides(folder, out_dir):
    return ["data=folder", f"data.train={folder}", f"data.valid={folder}", "data.num_workers=0",
            "data.batch_size=2", "data.segment_seconds=0.5", "data.valid_max_seconds=0.5", f"out_dir={out_dir}",
            "threads=1"]


def cfg_for(folder, out_dir, steps, *more):
    return compose_config([
        "experiment=tiny_seanet",
        "encoder.n_filters=4",
        "decoder.n_filters=4",
        "latent_dim=16",
        "quantizer.codebook_size=32",
        "quantizer.num_codebooks=3",
        "quantizer.kmeans_init=false",
        "quantizer.quantizer_dropout=true",
        "discriminator=tiny",
        "schedule.disc_start_step=2",
        "schedule.warmup_steps=3",
        "schedule.lr_decay=cosine",
        "schedule.total_steps=8",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "callbacks.last.every_n_train_steps=2",
        "logger={}",
        *data_overrides(folder, out_dir),
        *more,
    ])


def final_state(out_dir, name="last.ckpt"):
    ckpt = torch.load(out_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
    return ckpt


@pytest.fixture(scope="module")
def whole(synth_folder, tmp_path_factory):
    """The uninterrupted 8-step run (checkpoints at 2, 4, 6, 8; step6.ckpt and step8.ckpt kept)."""
    out = tmp_path_factory.mktemp("whole")
    run_training(cfg_for(synth_folder, out, 8))
    return out


def assert_same_training_state(a, b):
    assert a["global_step"] == b["global_step"]
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, st in oa["state"].items():
            for name, v in st.items():
                torch.testing.assert_close(v, ob["state"][pid][name], rtol=0, atol=0)
    assert [s["_last_lr"] for s in a["lr_schedulers"]] == [s["_last_lr"] for s in b["lr_schedulers"]]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(synth_folder, whole, tmp_path):
    part = tmp_path / "part"
    run_training(cfg_for(synth_folder, part, 4))  # stopped right after its step-4 checkpoint
    # the newest checkpoint was cut short by the kill: the run resumes from the step-4 one kept besides it
    last = part / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    cfg = cfg_for(synth_folder, part, 8)
    picked = resolve_resume(cfg)
    assert picked == str(part / "checkpoints" / "step4.ckpt")
    summary = run_training(cfg)
    assert summary["resumed_from"] == picked and summary["batches_this_run"] == 4

    assert_same_training_state(final_state(part), final_state(whole))


def test_two_recent_checkpoints_are_kept(whole):
    names = sorted(p.name for p in (whole / "checkpoints").glob("step*.ckpt"))
    assert names == ["step6.ckpt", "step8.ckpt"]


def position(ckpt):
    """(epoch, batches of the epoch done) of a checkpoint."""
    loop = ckpt["loops"]["fit_loop"]
    return loop["epoch_progress"]["current"]["completed"], loop["epoch_loop.batch_progress"]["current"]["completed"]


@pytest.mark.parametrize("stop", [1, 5], ids=["before-any-periodic-checkpoint", "between-checkpoints-mid-epoch"])
def test_a_run_stopped_by_max_steps_saves_its_final_step_and_continues_exactly(synth_folder, whole, tmp_path, stop):
    part = tmp_path / "part"
    run_training(cfg_for(synth_folder, part, stop))
    last = part / "checkpoints" / "last.ckpt"
    ckpt = final_state(part)
    assert ckpt["global_step"] == stop, "last.ckpt holds the final step, not the previous periodic checkpoint"
    assert (part / "checkpoints" / f"step{stop}.ckpt").is_file(), "the final step is a step checkpoint too"
    # saved at the end of the last batch, where the epoch is still open (Lightning's end-of-training save
    # closed it, so a resume started the next epoch: another data order and other crops)
    assert position(ckpt) == ((stop - 1) // 3, (stop - 1) % 3)

    before = last.read_bytes()
    again = run_training(cfg_for(synth_folder, part, stop))  # the same command again: nothing to do
    assert again["resumed_from"] == str(last) and again["batches_this_run"] == 0
    assert last.read_bytes() == before, "re-running a finished command leaves last.ckpt as it is"

    summary = run_training(cfg_for(synth_folder, part, 8))  # continued with a larger max_steps
    assert summary["resumed_from"] == str(last) and summary["batches_this_run"] == 8 - stop
    assert_same_training_state(final_state(part), final_state(whole))


def test_a_run_stopped_by_max_epochs_continues_exactly_from_the_end_of_its_epoch(synth_folder, whole, tmp_path):
    part = tmp_path / "part"
    run_training(cfg_for(synth_folder, part, -1, "trainer.max_epochs=1"))  # 3 batches, checkpoint at 2
    last = part / "checkpoints" / "last.ckpt"
    ckpt = final_state(part)
    assert ckpt["global_step"] == 3 and position(ckpt) == (0, 2)
    before = last.read_bytes()
    again = run_training(cfg_for(synth_folder, part, -1, "trainer.max_epochs=1"))
    assert again["batches_this_run"] == 0 and last.read_bytes() == before

    summary = run_training(cfg_for(synth_folder, part, -1, "trainer.max_epochs=2"))
    assert summary["resumed_from"] == str(last) and summary["batches_this_run"] == 3
    assert_same_training_state(final_state(part), final_state(whole, "step6.ckpt"))


class _Clock:
    """``time.monotonic`` for Lightning's Timer: one second per training batch (the Timer checks ``max_time``
    at the end of each batch), so the time limit stops the run at a known step."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def test_a_run_stopped_by_max_time_saves_its_final_step_and_continues_exactly(synth_folder, whole, tmp_path,
                                                                              monkeypatch):
    part = tmp_path / "part"
    clock, check = _Clock(), lightning_timer.Timer.on_train_batch_end

    def tick(self, trainer, *args, **kwargs):
        clock.now += 1.0
        check(self, trainer, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(lightning_timer, "time", clock)
        m.setattr(lightning_timer.Timer, "on_train_batch_end", tick)
        first = run_training(cfg_for(synth_folder, part, 8, "trainer.max_time=00:00:00:05"))
    stop = first["global_step"]
    assert stop == 5, "the time limit stopped the run after 5 (simulated) seconds, between two checkpoints"
    assert final_state(part)["global_step"] == stop
    again = run_training(cfg_for(synth_folder, part, 8, "trainer.max_time=00:00:00:05"))
    assert again["batches_this_run"] == 0, "the same command again: the time is used up (carried in last.ckpt)"

    # continued with a larger time limit (the cosine runs over schedule.total_steps, so it is unchanged)
    summary = run_training(cfg_for(synth_folder, part, 8, "trainer.max_time=00:01:00:00"))
    assert summary["resumed_from"] == str(part / "checkpoints" / "last.ckpt")
    assert summary["batches_this_run"] == 8 - stop
    assert_same_training_state(final_state(part), final_state(whole))


def test_resuming_with_another_schedule_horizon_warns(synth_folder, tmp_path):
    def module(minutes):
        return build_module(cfg_for(synth_folder, tmp_path, 8, f"schedule.total_minutes={minutes}"))

    ckpt = {}
    module(10).on_save_checkpoint(ckpt)
    assert ckpt["sonotok_schedule"]["total_minutes"] == 10.0
    ckpt["sonotok_train_seconds"] = 300.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(10).on_load_checkpoint(ckpt)  # the same limits: no warning
    with pytest.warns(UserWarning, match=r"total_minutes 10.0 -> 20.0.*5.00 training minutes"):
        module(20).on_load_checkpoint(ckpt)  # e.g. trainer.max_time doubled with total_minutes=max_time
    with pytest.warns(UserWarning, match=r"total_minutes 10.0 -> None, total_steps None -> 8"):
        module("null").on_load_checkpoint(ckpt)  # the cosine now runs over schedule.total_steps


def test_resume_auto_skips_unreadable_checkpoints(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    torch.save({"global_step": 2}, ckpts / "step2.ckpt")
    torch.save({"global_step": 4}, ckpts / "step4.ckpt")
    (ckpts / "last.ckpt").write_bytes((ckpts / "step4.ckpt").read_bytes()[:100])  # truncated
    cfg = compose_config([f"out_dir={tmp_path}"])
    assert resolve_resume(cfg) == str(ckpts / "step4.ckpt")
    torch.save({"global_step": 4}, ckpts / "last.ckpt")  # readable again: last.ckpt wins the tie
    assert resolve_resume(cfg) == str(ckpts / "last.ckpt")
    for p in ckpts.iterdir():
        p.write_bytes(b"")
    assert resolve_resume(cfg) is None


class _Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index_epoch):
        return index_epoch[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_at_the_saved_batch(workers):
    from sonotok.data.dataset import EpochSampler
    from sonotok.data.loader import ResumableDataLoader

    def make():
        return ResumableDataLoader(_Indices(), batch_size=2, sampler=EpochSampler(10, seed=3), num_workers=workers,
                                   persistent_workers=workers > 0)

    full = [b.tolist() for b in make()]
    it = iter(loader := make())
    seen = [next(it).tolist() for _ in range(2)]
    assert seen == full[:2] and loader.state_dict() == {"batches": 2}
    resumed = make()
    resumed.load_state_dict(loader.state_dict())
    assert len(resumed) == 5, "the epoch length stays the full one"
    assert [b.tolist() for b in resumed] == full[2:], "the rest of the epoch, in order, without replaying"
    assert resumed.state_dict() == {"batches": 5}
    assert [b.tolist() for b in resumed] == full, "the next pass is a whole epoch again"
    end = make()
    end.load_state_dict({"batches": 5})  # written after the last batch: the next epoch starts from its start
    assert [b.tolist() for b in end] == full
