import pytest
import torch

from sonotok.quantizers import FSQ, FrozenFSQ, FrozenVQ, GroupedResidualVQ, ResidualSimVQ, ResidualVQ

D = 16


def make(kind):
    if kind == "rvq":
        return ResidualVQ(D, num_codebooks=4, codebook_size=32, kmeans_init=True, kmeans_iters=2)
    if kind == "rvq_proj":
        return ResidualVQ(D, num_codebooks=3, codebook_size=32, codebook_dim=8, kmeans_init=False)
    if kind == "rvq_dropout":
        return ResidualVQ(D, num_codebooks=4, codebook_size=32, kmeans_init=False, quantizer_dropout=True)
    if kind == "grvq":
        return GroupedResidualVQ(D, groups=2, levels=2, codebook_size=32, kmeans_init=True, kmeans_iters=2)
    if kind == "grvq_proj":
        return GroupedResidualVQ(D, groups=2, levels=3, codebook_size=16, codebook_dim=4, kmeans_init=False)
    if kind == "simvq":
        return ResidualSimVQ(D, num_codebooks=1, codebook_size=128)
    if kind == "rsimvq":
        return ResidualSimVQ(D, num_codebooks=3, codebook_size=64)
    if kind == "fsq":
        return FSQ(D, levels=[8, 5, 5, 5], num_codebooks=2)
    raise ValueError(kind)


KINDS = ["rvq", "rvq_proj", "rvq_dropout", "grvq", "grvq_proj", "simvq", "rsimvq", "fsq"]


@pytest.mark.parametrize("kind", KINDS)
def test_forward_shapes_range_and_losses(kind):
    q = make(kind).train()
    z = torch.randn(3, D, 20, requires_grad=True)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.codes.shape == (3, q.num_codebooks, 20)
    assert out.codes.dtype == torch.long
    valid = out.codes[out.codes >= 0]
    assert valid.max() < q.codebook_size
    assert set(out.losses) == {"vq/commit"}
    (out.z_q.sum() + out.losses["vq/commit"]).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert "vq/perplexity" in out.metrics


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_gives_identical_codes(kind):
    q = make(kind)
    q.train()
    for _ in range(3):  # let k-means init / EMA move the codebooks
        q(torch.randn(4, D, 30))
    q.eval()
    z = torch.randn(2, D, 50) * 2
    with torch.no_grad():
        ref = q(z)
    frozen = q.to_frozen()
    assert isinstance(frozen, (FrozenVQ, FrozenFSQ))
    codes = frozen.encode(z)
    assert torch.equal(codes, ref.codes), "frozen codes differ from the training module's eval codes"
    torch.testing.assert_close(frozen.decode(codes), ref.z_q, atol=1e-5, rtol=1e-5)
    scripted = torch.jit.script(frozen)
    assert torch.equal(scripted.encode(z), codes)
    torch.testing.assert_close(scripted.decode(codes), frozen.decode(codes))
    # eager encode/decode run through the frozen path
    assert torch.equal(q.encode(z), codes)


@pytest.mark.parametrize("kind", ["rvq", "grvq", "rsimvq"])
def test_lower_bitrate_decoding(kind):
    q = make(kind).eval()
    z = torch.randn(1, D, 10)
    full = q.encode(z)
    k = q.num_codebooks // 2 if kind != "rsimvq" else 1
    if kind == "grvq":
        k = q.groups
    part = q.encode(z, num_codebooks=k)
    assert torch.equal(part, full[:, :k])
    zq = q.decode(part)
    assert zq.shape == z.shape
    # fewer codebooks reconstruct worse (or equal), never better
    err_full = (q.decode(full) - z).pow(2).mean()
    err_part = (zq - z).pow(2).mean()
    assert err_part >= err_full - 1e-6


def test_bad_num_codebooks_and_latent_errors():
    q = make("grvq")
    with pytest.raises(ValueError, match="multiple of groups"):
        q.encode(torch.randn(1, D, 4), num_codebooks=3)
    with pytest.raises(ValueError, match=r"latent \[B, 16, T\]"):
        q.encode(torch.randn(1, D + 1, 4))
    with pytest.raises(ValueError, match=r"num_codebooks must be in \[1, 2\], got 3"):
        make("fsq").encode(torch.randn(1, D, 4), num_codebooks=3)


def test_rvq_quantizer_dropout_marks_dropped_codebooks():
    torch.manual_seed(3)
    q = make("rvq_dropout").train()
    seen_dropped = False
    for _ in range(10):
        codes = q(torch.randn(2, D, 8)).codes
        dropped = (codes == -1).all(dim=(0, 2))
        if dropped.any():
            seen_dropped = True
            first = int(dropped.nonzero()[0])
            assert dropped[first:].all(), "dropout must drop a suffix of codebooks"
    assert seen_dropped
