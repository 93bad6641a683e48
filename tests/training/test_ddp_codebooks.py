"""RVQ / GRVQ codebook statistics under DDP: 2 gloo CPU processes, each rank sees different data.

The quantizer is built before the process group exists (as ``build_module`` does before ``trainer.fit``);
``setup_distributed()`` (called from the training module's ``setup``) must then make every rank end with
the same codebooks, equal to what one process computes on the union of the ranks' batches.
"""

import os

import pytest
import torch
import torch.distributed as dist
from gloo_helpers import spawn_gloo

from sonotok.quantizers.rvq import GroupedResidualVQ, ResidualVQ

STEPS = 4


def _build(kind, sync=True, kmeans=False):
    torch.manual_seed(0)
    kw = dict(codebook_size=16, kmeans_init=kmeans, decay=0.8, commitment_weight=1.0, quantizer_dropout=False,
              sync_codebook=sync)
    if kind == "grvq":
        return GroupedResidualVQ(dim=8, groups=2, levels=2, **kw)
    return ResidualVQ(dim=8, num_codebooks=2, **kw)


def _batches(rank):
    g = torch.Generator().manual_seed(100 + rank)
    # rank 1's latents are shifted: the union differs from either rank's data
    return [torch.randn(3, 8, 20, generator=g) + 2.0 * rank for _ in range(STEPS)]


def _codebooks(q):
    return torch.cat([m.embed.detach().reshape(-1) for m in q.vq.modules() if hasattr(m, "embed_avg")])


def _worker(rank, world, port, kind, sync, kmeans, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    q = _build(kind, sync, kmeans)  # built before the process group, as in training
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        synced = q.setup_distributed()
        q.train()
        for z in _batches(rank):
            q(z)
        torch.save({"codebooks": _codebooks(q), "synced": synced}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _run(tmp_path, kind, sync, kmeans=False):
    spawn_gloo(_worker, kind, sync, kmeans, str(tmp_path))
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def _union(kind):
    q = _build(kind)
    assert not q.synchronised  # no process group here
    q.train()
    for a, b in zip(_batches(0), _batches(1)):
        q(torch.cat([a, b]))
    return _codebooks(q)


@pytest.mark.parametrize("kind", ["rvq", "grvq"])
def test_codebooks_are_synchronised_and_learn_from_every_rank(kind, tmp_path):
    r0, r1 = _run(tmp_path, kind, sync=True)
    assert r0["synced"] and r1["synced"]
    torch.testing.assert_close(r0["codebooks"], r1["codebooks"], rtol=0, atol=0)
    # the EMA codebooks equal one process's on the union of both ranks' batches
    torch.testing.assert_close(r0["codebooks"], _union(kind), rtol=1e-5, atol=1e-5)


def test_without_sync_each_rank_keeps_its_own_statistics(tmp_path):
    # what happened before: statistics from the local batch only (so the test above can fail)
    r0, r1 = _run(tmp_path, "rvq", sync=False)
    assert not r0["synced"]
    assert not torch.allclose(r0["codebooks"], r1["codebooks"])


def test_kmeans_init_uses_every_rank(tmp_path):
    r0, r1 = _run(tmp_path, "rvq", sync=True, kmeans=True)
    torch.testing.assert_close(r0["codebooks"], r1["codebooks"], rtol=0, atol=0)


def test_setup_distributed_keeps_weights_and_is_a_no_op_alone():
    q = _build("rvq", kmeans=False)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    vq = q.vq
    assert q.setup_distributed() is False
    assert q.vq is vq
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


def _module_worker(rank, world, port, out):
    from sonotok.training.train import build_module, compose_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    module = build_module(compose_config(["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4",
                                          "latent_dim=16", "quantizer.codebook_size=16", "quantizer.num_codebooks=2"]))
    before = module.codec.quantizer.synchronised
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        module.setup("fit")  # what Lightning calls once the process group exists, before DDP and optimizers
        torch.save({"before": before, "after": module.codec.quantizer.synchronised}, os.path.join(out, f"m{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_training_module_setup_turns_on_codebook_sync(tmp_path):
    spawn_gloo(_module_worker, str(tmp_path))
    for r in range(2):
        state = torch.load(tmp_path / f"m{r}.pt")
        assert state == {"before": False, "after": True}
