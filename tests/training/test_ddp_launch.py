"""DDP on 2 CPU processes (gloo): the GAN under ``trainer=cpu_ddp``, ``sonotok train ... trainer=ddp`` starting
its worker rank (console script and ``python -m sonotok.cli``), a dead worker ending the run, and the
per-optimizer gradient averaging."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

SMALL = [
    "experiment=tiny_seanet",
    "encoder.n_filters=4",
    "decoder.n_filters=4",
    "latent_dim=16",
    "quantizer.codebook_size=32",
    "quantizer.num_codebooks=2",
    "quantizer.kmeans_init=false",
    "trainer.enable_progress_bar=false",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "logger={}",
]


def data(folder, out_dir):
    return ["data=folder", f"data.train={folder}", f"data.valid={folder}", "data.num_workers=0", "data.batch_size=2",
            "data.segment_seconds=0.5", "data.valid_max_seconds=0.5", f"out_dir={out_dir}", "threads=1"]


def env(**extra):
    e = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", **extra)
    e.pop("LOCAL_RANK", None)
    return e


def run(cmd, cwd, timeout=240, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw)
    return r, r.stdout + r.stderr


def test_gan_trains_under_cpu_ddp(synth_folder, tmp_path):
    # was: "parameters that were not used in producing the loss" (two backwards in one DDP forward)
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train.py"), *SMALL, "discriminator=tiny", "schedule.disc_start_step=1",
           "trainer=cpu_ddp", "trainer.max_steps=4", *data(synth_folder, out)]
    r, log = run(cmd, tmp_path, env=env())
    assert r.returncode == 0, log[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 == int(ckpt["state_dict"]["gen_steps"])
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])


def _console_script():
    path = Path(sys.executable).parent / "sonotok"
    return str(path) if path.is_file() else shutil.which("sonotok")


@pytest.mark.parametrize("entry", ["console", "module"])
def test_sonotok_train_starts_its_ddp_workers(entry, synth_folder, tmp_path):
    if entry == "console":
        script = _console_script()
        if script is None:
            pytest.skip("the sonotok console script is not installed")
        prog = [script]
    else:
        prog = [sys.executable, "-m", "sonotok.cli"]
    out = tmp_path / "run"
    cmd = [*prog, "train", *SMALL, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.precision=32-true", "trainer.max_steps=1", "trainer.limit_val_batches=0",
           *data(synth_folder, out)]
    r, log = run(cmd, tmp_path, env=env())
    assert r.returncode == 0, log[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log, "the worker rank did not start"
    assert (out / "model" / "config.yaml").is_file()


def test_a_dead_worker_ends_the_run(synth_folder, tmp_path):
    # the worker rank dies at start-up (as it did when relaunched as '<cwd>/sonotok train'): rank 0 must not hang
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nif os.environ.get('LOCAL_RANK') == '1':\n    os._exit(3)\n")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sonotok.cli", "train", *SMALL, "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "trainer.max_steps=50", *data(synth_folder, out)]
    pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    r, log = run(cmd, tmp_path, timeout=120, env=env(PYTHONPATH=pythonpath))
    assert r.returncode != 0
    assert "terminated with code 3" in log, log[-2000:]


def _sync_worker(rank, world, port, out):
    import torch.distributed as dist

    from sonotok.training.base import TrainingModule

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        a, b, c = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        a.grad = torch.full((3,), float(rank + 1))  # 1 and 2: average 1.5
        b.grad = torch.ones(3) if rank == 0 else None  # used on one rank: averaged with zeros
        c.grad = None  # used on none: stays None
        TrainingModule._sync_grads(TrainingModule.__new__(TrainingModule), [a, b, c])
        torch.save({"a": a.grad, "b": b.grad, "c": c.grad}, os.path.join(out, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gradients_are_averaged_per_optimizer(tmp_path):
    from gloo_helpers import spawn_gloo

    spawn_gloo(_sync_worker, str(tmp_path))
    for r in range(2):
        g = torch.load(tmp_path / f"{r}.pt")
        torch.testing.assert_close(g["a"], torch.full((3,), 1.5))
        torch.testing.assert_close(g["b"], torch.full((3,), 0.5))
        assert g["c"] is None
