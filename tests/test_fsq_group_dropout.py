"""FSQ group (tail) dropout: one FSQ model decodes the first k of its K groups (variable bitrate)."""

import pytest
import torch
from omegaconf import OmegaConf

from sonotok.quantizers import FSQ

D, K = 24, 4  # 24 != 4 groups x 4 dims: FSQ projects in and out (the shipped default, 32 = 8 x 4, does not)


def make(p=1.0, min_groups=1, seed=0, dim=D):
    torch.manual_seed(seed)
    return FSQ(dim, levels=[8, 5, 5, 5], num_codebooks=K, group_dropout=p, min_groups=min_groups)


def z_of(b=8, t=12, seed=1, dim=D):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, dim, t, generator=g) * 2


def kept_per_item(codes):
    """Groups each item kept, checking that the dropped groups are a tail (-1 on every frame)."""
    valid = codes >= 0
    assert (valid == valid[:, :, :1]).all(), "a group is dropped for some frames of an item only"
    v = valid[:, :, 0]
    k = v.sum(1)
    assert torch.equal(v, torch.arange(codes.shape[1])[None] < k[:, None]), "dropped groups must be a tail"
    return k


@pytest.mark.parametrize("dim", [D, 16])  # with and without projections
def test_dropout_draws_k_in_range_and_zeros_the_tail(dim):
    q = make(p=1.0, min_groups=2, dim=dim).train()
    z = z_of(b=64, dim=dim)
    out = q(z)
    k = kept_per_item(out.codes)
    assert int(k.min()) >= 2 and int(k.max()) <= K
    assert set(k.tolist()) == {2, 3, 4}, "k must be drawn per item over the whole range"
    assert out.codes[out.codes >= 0].max() < q.codebook_size
    # each item's z_q equals the projection of its kept groups' values with the tail zeroed
    vq = q.vq
    ref_codes = q.eval()(z).codes  # eval: every group; the kept groups' codes are the same codes
    assert torch.equal(torch.where(out.codes >= 0, ref_codes, out.codes), out.codes)
    for i in range(z.shape[0]):
        vals = vq.indices_to_level_indices(ref_codes[i].T)  # [T, K, d]
        vals = vq._scale_and_shift_inverse(vals).float()
        vals[:, int(k[i]):] = 0
        expect = vq.project_out(vals.reshape(vals.shape[0], -1)).T
        torch.testing.assert_close(out.z_q[i], expect, atol=1e-5, rtol=1e-5)
    assert 2 <= float(out.metrics["vq/groups_kept"]) <= K


def test_dropout_probability_zero_and_one():
    z = z_of(b=32)
    q0 = make(p=0.0).train()
    assert (q0(z).codes >= 0).all()
    q1 = make(p=1.0, min_groups=1).train()
    torch.manual_seed(5)
    assert (kept_per_item(q1(z).codes) < K).any()
    # min_groups == K: nothing can be dropped
    assert (make(p=1.0, min_groups=K).train()(z).codes >= 0).all()


def test_gradients_flow_through_kept_groups_only():
    q = make(p=1.0, min_groups=1).train()
    torch.manual_seed(0)
    z = z_of(b=16).requires_grad_(True)
    out = q(z)
    out.z_q.pow(2).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    w = q.vq.project_in.weight.grad  # [K * d, D]: rows of groups no item kept get no gradient
    k = kept_per_item(out.codes)
    assert w is not None and q.vq.project_out.weight.grad is not None
    d = q.vq.codebook_dim
    for g in range(K):
        rows = w[g * d: (g + 1) * d]
        assert (rows.abs().sum() > 0) == bool((k > g).any())


def test_gradients_without_projection_reach_kept_dims_only():
    q = make(p=1.0, min_groups=1, dim=16).train()
    torch.manual_seed(0)
    z = z_of(b=16, dim=16).requires_grad_(True)
    out = q(z)
    out.z_q.sum().backward()
    k = kept_per_item(out.codes)
    for i in range(z.shape[0]):  # straight-through: grad of the kept groups' dims, zero for the dropped ones
        g = z.grad[i].abs().sum(-1).reshape(K, 4).sum(-1)
        assert torch.equal(g > 0, torch.arange(K) < k[i])


def test_eval_is_deterministic_and_unaffected():
    q_drop, q_plain = make(p=0.9, seed=0), make(p=0.0, seed=0)
    q_plain.load_state_dict(q_drop.state_dict())
    q_drop.eval(), q_plain.eval()
    z = z_of()
    a, b = q_drop(z), q_drop(z)
    ref = q_plain(z)
    assert (a.codes >= 0).all()
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codes, ref.codes)
    assert torch.equal(a.z_q, ref.z_q)


def test_old_state_dict_and_config_load_with_identical_codes():
    torch.manual_seed(0)
    old = FSQ(D, levels=[8, 5, 5, 5], num_codebooks=K).eval()  # the pre-dropout constructor
    assert old.group_dropout == 0.0 and old.min_groups == 1
    new = make(p=0.5, min_groups=2).eval()
    new.load_state_dict(old.state_dict())  # strict: no new parameters or buffers
    z = z_of()
    assert torch.equal(new(z).codes, old(z).codes)
    assert torch.equal(new.encode(z), old.encode(z))
    # an old config (no group_dropout / min_groups keys) instantiates with dropout off
    from hydra.utils import instantiate

    cfg = OmegaConf.create({"_target_": "sonotok.quantizers.FSQ", "dim": D, "levels": [8, 5, 5, 5],
                            "num_codebooks": K})
    q = instantiate(cfg)
    assert q.group_dropout == 0.0
    q.load_state_dict(old.state_dict())
    assert torch.equal(q.train()(z).codes, old.eval()(z).codes), "dropout off: training codes unchanged"


def test_config_group_has_the_keys_off_by_default():
    from pathlib import Path

    import sonotok

    cfg = OmegaConf.load(Path(sonotok.__file__).parent / "conf" / "quantizer" / "fsq.yaml")
    assert cfg.group_dropout == 0.0 and cfg.min_groups == 1


@pytest.mark.parametrize("kw, match", [
    (dict(group_dropout=1.5), "group_dropout must be a probability"),
    (dict(group_dropout=-0.1), "group_dropout must be a probability"),
    (dict(min_groups=0), r"min_groups must be in \[1, num_codebooks=4\]"),
    (dict(min_groups=5), r"min_groups must be in \[1, num_codebooks=4\]"),
])
def test_bad_dropout_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        FSQ(D, levels=[8, 5, 5, 5], num_codebooks=K, **kw)


def test_training_config_enables_dropout_in_the_codec():
    from hydra.utils import instantiate

    from sonotok.training.train import compose_config

    cfg = compose_config(["experiment=tiny", "quantizer.group_dropout=1.0", "quantizer.min_groups=4",
                          "encoder.width=16", "decoder.width=16"])
    assert cfg.quantizer.group_dropout == 1.0 and cfg.quantizer.min_groups == 4
    torch.manual_seed(0)
    codec = instantiate(cfg.codec).train()
    assert codec.quantizer.group_dropout == 1.0 and codec.quantizer.min_groups == 4
    wav = torch.randn(6, 1, 1600) * 0.1
    out = codec(wav)
    k = kept_per_item(out["codes"])
    assert out["codes"].shape[1] == 8 and int(k.min()) >= 4 and int(k.max()) <= 8
    out["recon"].pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in codec.encoder.parameters())
