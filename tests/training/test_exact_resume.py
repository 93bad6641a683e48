"""Exact resume: an interrupted run resumed from its checkpoint ends with the weights of an uninterrupted one.

Compared by weights (codec, discriminator, codebook buffers), optimizer and scheduler state, not counters.
The run uses the GAN (from step 2), quantizer dropout (training random numbers), validation between steps
(which draws random numbers for its loader) and a checkpoint in the middle of an epoch (6 files, batch 2:
3 batches per epoch, the checkpoint after step 4 is batch 1 of epoch 1).
"""

import pytest
import torch

from sonotok.training.train import compose_config, resolve_resume, run_training


def data_overrides(folder, out_dir):
    return ["data=folder", f"data.train={folder}", f"data.valid={folder}", "data.num_workers=0",
            "data.batch_size=2", "data.segment_seconds=0.5", "data.valid_max_seconds=0.5", f"out_dir={out_dir}",
            "threads=1"]


def cfg_for(folder, out_dir, steps):
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
    ])


def final_state(out_dir):
    ckpt = torch.load(out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


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


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(synth_folder, tmp_path):
    whole = tmp_path / "whole"
    run_training(cfg_for(synth_folder, whole, 8))

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


def test_two_recent_checkpoints_are_kept(synth_folder, tmp_path):
    run_training(cfg_for(synth_folder, tmp_path, 8))
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step*.ckpt"))
    assert names == ["step6.ckpt", "step8.ckpt"]


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
