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


# ----------------------------------------------------------------- inference at k < K


def trained_like(dim=D):
    """An FSQ whose eval decode of codes with the tail -1 must equal its training output."""
    return make(p=1.0, min_groups=1, dim=dim)


@pytest.mark.parametrize("dim", [D, 16])
def test_frozen_equals_eager_at_every_k(dim):
    q = trained_like(dim).eval()
    z = z_of(b=3, t=10, dim=dim)
    frozen = q.to_frozen()
    scripted = torch.jit.script(frozen)
    full = q.encode(z)
    assert torch.equal(frozen.encode(z), full) and torch.equal(scripted.encode(z), full)
    for k in range(1, K + 1):
        part = q.encode(z, num_codebooks=k)
        assert part.shape == (3, k, 10) and torch.equal(part, full[:, :k])
        # decoding the first k rows == decoding all rows with the tail marked dropped (-1) == training
        tail = torch.cat([part, torch.full((3, K - k, 10), -1, dtype=torch.long)], 1)
        zq = q.decode(part)
        assert zq.shape == z.shape
        torch.testing.assert_close(frozen.decode(part), zq, atol=0, rtol=0)
        torch.testing.assert_close(scripted.decode(part), zq, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(q.decode(tail), zq, atol=0, rtol=0)
        # the same values the training forward gives an item that kept k groups
        vq = q.vq
        vals = vq._scale_and_shift_inverse(vq.indices_to_level_indices(full.permute(0, 2, 1))).float()
        vals[:, :, k:] = 0
        expect = vq.project_out(vals.reshape(3, 10, -1)).transpose(1, 2)
        torch.testing.assert_close(zq, expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.decode(full), q(z).z_q, atol=1e-5, rtol=1e-5)


def test_decode_of_training_codes_reproduces_training_z_q():
    q = trained_like().train()
    torch.manual_seed(2)
    z = z_of(b=16)
    out = q(z)
    assert (out.codes < 0).any()
    torch.testing.assert_close(q.eval().decode(out.codes), out.z_q.detach(), atol=1e-5, rtol=1e-5)


def test_fewer_groups_reconstruct_worse():
    q = make(p=0.0, dim=16).eval()  # no projection: decode(encode(z)) approximates the bounded z
    z = z_of(b=2, t=50, dim=16) * 0.2
    errs = [(q.decode(q.encode(z, num_codebooks=k)) - z).pow(2).mean().item() for k in range(1, K + 1)]
    assert errs == sorted(errs, reverse=True) and errs[0] > errs[-1]


def test_bad_k_is_a_clear_error():
    q = trained_like().eval()
    z = z_of(b=1, t=4)
    for k in (0, K + 1):
        with pytest.raises(ValueError, match=rf"num_codebooks must be in \[1, {K}\], got {k}"):
            q.encode(z, num_codebooks=k)
    with pytest.raises(ValueError, match=rf"num_codebooks must be in \[1, {K}\], got {K + 1}"):
        q.decode(torch.zeros(1, K + 1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="codes hold 5 codebooks, expected 1 to 4"):
        q.to_frozen().decode(torch.zeros(1, K + 1, 4, dtype=torch.long))
    with pytest.raises(Exception, match="codes hold 0 codebooks, expected 1 to 4"):
        torch.jit.script(q.to_frozen()).decode(torch.zeros(1, 0, 4, dtype=torch.long))


def tiny_codec(num_codebooks=8):
    from sonotok.models import Codec
    from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder

    torch.manual_seed(0)
    kw = dict(dimension=32, n_filters=4, dilations=(1,), strides=(2, 4, 5, 8))  # 16 kHz / 320 = 50 Hz
    q = FSQ(32, levels=[8, 5, 5, 5], num_codebooks=num_codebooks, group_dropout=0.5, min_groups=4)
    codec = Codec(SEANetEncoder(**kw), q, SEANetDecoder(**kw), sample_rate=16000, name="tiny-fsq-vbr").eval()
    with torch.no_grad():  # random latents are tiny: scale the last encoder conv so FSQ's rounding sees varied values
        for n, p in codec.encoder.named_parameters():
            if n.startswith("model.layers.14.") and not n.endswith("original1"):
                p.mul_(20)
    return codec


def test_codec_round_trip_and_bitrate_at_k4():
    codec = tiny_codec()
    wav = torch.randn(2, 1, 16000) * 0.1
    assert codec.bitrate() == pytest.approx(50 * 8 * 9.9658, rel=1e-4)  # 3.99 kbps
    assert codec.bitrate(4) == pytest.approx(codec.bitrate() / 2) and codec.bitrate(4) <= 2000
    full = codec.encode(wav)
    codes = codec.encode(wav, num_codebooks=4)
    assert codes.shape == (2, 4, 50) and torch.equal(codes, full[:, :4])
    assert full[:, 4:].unique().numel() > 10, "the dropped groups carry information"
    out = codec.decode(codes, length=16000)
    assert out.shape == (2, 1, 16000) and torch.isfinite(out).all()
    assert not torch.allclose(out, codec.decode(full, length=16000))
    # streaming decode of the 4 rows equals the offline decode (the frozen quantizer pads the tail)
    enc_state, dec_state = codec.init_state(2)
    y, _ = codec.decode_step(codes, dec_state)
    torch.testing.assert_close(y, codec.decode(codes), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"num_codebooks must be in \[1, 8\], got 9"):
        codec.encode(wav, num_codebooks=9)
    with pytest.raises(ValueError, match=r"num_codebooks must be in \[1, 8\], got 0"):
        codec.bitrate(0)


def test_tokenizer_batch_encode_at_k4():
    from sonotok.tokenizer.ops import decode_batch, encode_batch

    codec = tiny_codec()
    wavs = [torch.randn(8000) * 0.1, torch.randn(12345) * 0.1]
    full = encode_batch(codec, wavs)
    low = encode_batch(codec, wavs, num_codebooks=4)
    for a, b in zip(full, low):
        assert b.shape[0] == 4 and torch.equal(a[:4], b)
    outs = decode_batch(codec, low, [8000, 12345])
    assert [o.shape[-1] for o in outs] == [8000, 12345]


def test_torchscript_artifact_decodes_k4_like_eager(tmp_path):
    from sonotok.export.runtime import optimize_for_cpu
    from sonotok.export.torchscript import export_torchscript

    codec = tiny_codec()
    export_torchscript(codec, tmp_path, model_id="tiny-fsq-vbr-0")
    wav = torch.randn(1, 1, 3 * 320) * 0.1
    codes = codec.encode(wav, num_codebooks=4)
    ref = codec.decode(codes)
    offline = torch.jit.load(str(tmp_path / "codec.pt"))
    assert torch.equal(offline.encode(wav)[:, :4], codes)
    torch.testing.assert_close(offline.decode(codes), ref, atol=1e-5, rtol=1e-4)
    for dec in (torch.jit.load(str(tmp_path / "decoder_stream.pt")),
                optimize_for_cpu(torch.jit.load(str(tmp_path / "decoder_stream.pt")))):
        state = dec.init_state(1)
        parts = []
        for f in range(codes.shape[-1]):  # frame by frame, as a stream
            y, state = dec(codes[..., f: f + 1], state)
            parts.append(y)
        torch.testing.assert_close(torch.cat(parts, -1), ref, atol=1e-5, rtol=1e-4)
