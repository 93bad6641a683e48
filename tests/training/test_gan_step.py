"""Semantics of the GAN training step: which parameters each optimizer updates, with which gradients.

Per batch: the discriminator steps first on ``adv/disc`` (weighted), with no codec gradient (its input is
detached and the codec frozen); its gradients are cleared after its step; then the generator steps with
the discriminator frozen (no discriminator gradient computed) and unchanged. Lightning's ``global_step``
counts generator steps only. Gradient clipping sees unscaled gradients under fp16 AMP.
"""

import functools

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sonotok.training.train import build_module, compose_config

SMALL = [
    "experiment=tiny_seanet",
    "encoder.n_filters=4",
    "decoder.n_filters=4",
    "latent_dim=16",
    "quantizer.codebook_size=16",
    "quantizer.num_codebooks=2",
    "quantizer.kmeans_init=false",
    "quantizer.quantizer_dropout=false",
    "discriminator=tiny",
    "schedule.disc_start_step=0",
]


def make_module(extra=(), lr=0.05):
    pl.seed_everything(0)
    module = build_module(compose_config([*SMALL, *extra]))
    module.optimizer_fn = functools.partial(torch.optim.SGD, lr=lr)
    module.disc_optimizer_fn = functools.partial(torch.optim.SGD, lr=lr)
    return module


def loader(n=3):
    g = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(0.1 * torch.randn(n * 2, 1, 4000, generator=g)), batch_size=2)


def trainer(steps, **kw):
    return pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, **kw)


def snapshot(params):
    return [p.detach().clone() for p in params]


def grads(params):
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


class Recorder(pl.Callback):
    """Records, around every optimizer step, the parameters and gradients of both models."""

    def __init__(self):
        self.events = []

    def on_train_start(self, trainer, module):
        opt_g, opt_d = trainer.optimizers
        self.g = list(module.codec.parameters())
        self.d = list(module.discriminator.parameters())
        for name, opt in (("g", opt_g), ("d", opt_d)):
            opt.register_step_pre_hook(functools.partial(self._hook, f"{name}_pre"))
            opt.register_step_post_hook(functools.partial(self._hook, f"{name}_post"))

    def _hook(self, name, opt, args, kwargs):
        self.events.append((name, {"g": snapshot(self.g), "d": snapshot(self.d),
                                   "g_grad": grads(self.g), "d_grad": grads(self.d)}))


def run(module, steps=3, **kw):
    rec = Recorder()
    t = trainer(steps, callbacks=[rec], **kw)
    t.fit(module, train_dataloaders=loader())
    return t, rec


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_each_optimizer_updates_only_its_model():
    t, rec = run(make_module(["schedule.grad_clip=0", "schedule.disc_grad_clip=0"]))
    names = [n for n, _ in rec.events]
    assert names == ["d_pre", "d_post", "g_pre", "g_post"] * 3, "per batch: discriminator step, then generator step"
    assert t.global_step == 3, "global_step counts generator steps (one per batch)"
    for i in range(0, len(rec.events), 4):
        (_, d_pre), (_, d_post), (_, g_pre), (_, g_post) = rec.events[i : i + 4]
        # discriminator step: gradients for D only (the codec output is detached and the codec frozen)
        assert all(g is None for g in d_pre["g_grad"]), "the D loss must not reach the codec"
        assert any(g is not None and g.abs().sum() > 0 for g in d_pre["d_grad"])
        assert same(d_pre["g"], d_post["g"]) and not same(d_pre["d"], d_post["d"])
        # generator step: D frozen (no gradient computed), its gradients cleared after its own step
        assert all(g is None for g in g_pre["d_grad"]), "D gradients are cleared and not computed in the G step"
        assert same(d_post["d"], g_pre["d"]) and same(g_pre["d"], g_post["d"]), "the G step leaves D unchanged"
        assert any(g is not None and g.abs().sum() > 0 for g in g_pre["g_grad"])
        assert not same(g_pre["g"], g_post["g"])


def test_adv_disc_weight_scales_the_discriminator_step():
    first = {}
    for w in (1.0, 3.0):
        module = make_module(["schedule.grad_clip=0", "schedule.disc_grad_clip=0"])
        module.weights["adv/disc"] = w  # (slash keys cannot be dot-path overrides)
        _, rec = run(module, steps=1)
        first[w] = rec.events[0][1]["d_grad"]
    a = torch.cat([g.reshape(-1) for g in first[1.0]])
    b = torch.cat([g.reshape(-1) for g in first[3.0]])
    # weight 3 triples the discriminator's gradient (up to float rounding through the network)
    torch.testing.assert_close(b, 3.0 * a, rtol=1e-3, atol=1e-4 * float(a.abs().max()))


def test_gan_start_step_and_no_gan_count_one_step_per_batch():
    module = make_module(["schedule.disc_start_step=2"])
    t, rec = run(module, steps=3)
    assert [n for n, _ in rec.events] == ["g_pre", "g_post", "g_pre", "g_post", "d_pre", "d_post", "g_pre", "g_post"]
    assert t.global_step == 3 and int(module.gen_steps) == 3


class NormAtStep(pl.Callback):
    def __init__(self):
        self.norms = []

    def on_train_start(self, trainer, module):
        def hook(opt, args, kwargs):
            gs = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs]))))

        trainer.optimizers[0].register_step_pre_hook(hook)


@pytest.mark.parametrize("clip", [1e-3])
def test_clipping_sees_unscaled_gradients_under_fp16(clip):
    from lightning.pytorch.plugins.precision import MixedPrecision

    module = make_module(["discriminator=none", f"schedule.grad_clip={clip}"])
    cb = NormAtStep()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    t = trainer(4, callbacks=[cb], plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    t.fit(module, train_dataloaders=loader(4))
    # the optimizer steps with the clipped, unscaled gradients: norm == clip (clipping before unscaling
    # would leave clip / scale); steps the scaler skips (inf) do not reach the optimizer
    assert cb.norms and scaler.get_scale() > 1
    for n in cb.norms:
        assert n == pytest.approx(clip, rel=1e-2)
