import torch

from sonotok.losses.semantic import SemanticDistillLoss
from sonotok.models.semantic import FirstCodebookCodec, XCodec
from sonotok.quantizers import ResidualVQ
from sonotok.quantizers.split import SplitResidualVQ
from tests.semantic.conftest import TinyTeacher, tiny_codec_parts


def _module(codec, teacher=None, kind="cosine"):
    from sonotok.losses.spectral import MultiResolutionMelLoss
    from sonotok.training.semantic_module import SemanticCodecLightningModule

    return SemanticCodecLightningModule(
        codec=codec, losses={"mel": MultiResolutionMelLoss(16000, n_ffts=[256], n_mels=[16])},
        weights={"rec/mel": 1.0, "vq/commit": 1.0, "sem/distill": 1.0}, teacher=teacher,
        semantic_loss=SemanticDistillLoss(kind))


def _check_teacher_outside(module, teacher):
    tids = {id(p) for p in teacher.parameters()}
    assert not tids & {id(p) for p in module.parameters()}
    opt, _ = module.configure_optimizers()
    assert not tids & {id(p) for g in opt[0].param_groups for p in g["params"]}
    assert not any(k.startswith("teacher") or ".teacher." in k for k in module.state_dict())


def test_first_codebook_forward_backward_and_streams():
    enc, q, dec = tiny_codec_parts()
    teacher = TinyTeacher()
    codec = FirstCodebookCodec(enc, q, dec, teacher_dim=12)
    module = _module(codec, teacher)
    _check_teacher_outside(module, teacher)
    wav = torch.randn(2, 1, 3200) * 0.1
    out = codec(wav)
    assert out["semantic_pred"].shape == (2, 12, 10)
    assert "sem/distill" in out["losses"]
    out["losses"]["sem/distill"].backward(retain_graph=True)  # reaches the encoder through the first level
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    module.weighted_total(out["losses"]).backward()
    assert codec.semantic_proj.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    # the teacher is not needed to tokenize, and streaming gives the offline codes
    codec.eval()
    codes = codec.encode(wav)
    with codec.streaming(2) as s:
        streamed = torch.cat([s.encode(wav[..., i: i + 960]) for i in range(0, 3200, 960)], -1)
    assert torch.equal(codes, streamed)


def test_split_rvq_codes_and_frozen():
    sem = ResidualVQ(dim=16, num_codebooks=1, codebook_size=32, kmeans_init=False)
    ac = ResidualVQ(dim=16, num_codebooks=2, codebook_size=32, kmeans_init=False)
    q = SplitResidualVQ(sem, ac).eval()
    z = torch.randn(2, 16, 7)
    out = q(z)
    assert out.codes.shape == (2, 3, 7) and q.num_codebooks == 3
    assert torch.equal(q.encode(z), out.codes)
    assert torch.allclose(q.decode(out.codes), out.z_q, atol=1e-5)
    assert torch.jit.script(q.to_frozen()).encode(z).shape == (2, 3, 7)
    enc, _, dec = tiny_codec_parts()
    codec = FirstCodebookCodec(enc, SplitResidualVQ(sem, ac), dec, teacher_dim=12)
    module = _module(codec, TinyTeacher())
    out = codec(torch.randn(1, 1, 3200) * 0.1)
    module.weighted_total(out["losses"]).backward()
    assert codec.semantic_proj.weight.grad is not None


def test_xcodec_forward_backward_encode_decode():
    enc, q, dec = tiny_codec_parts()
    teacher = TinyTeacher()
    codec = XCodec(enc, q, dec, teacher=teacher, teacher_dim=12, semantic_dim=8)
    module = _module(codec, kind="mse")
    assert module.teacher_module is teacher
    _check_teacher_outside(module, teacher)
    assert not any("teacher" in k for k in codec.state_dict())
    wav = torch.randn(2, 1, 3200) * 0.1
    out = codec(wav)
    assert out["semantic_pred"].shape == out["semantic_target"].shape == (2, 12, 10)
    module.weighted_total(out["losses"]).backward()
    assert codec.semantic_encoder[0].weight.grad is not None
    assert codec.semantic_decoder[-1].weight.grad is not None
    codec.eval()
    codes = codec.encode(wav)
    assert codes.shape == (2, 3, 10)
    assert codec.decode(codes).shape == (2, 1, 3200)
    assert codec.decode_semantic(codes).shape == (2, 12, 10)


def test_losses():
    p, t = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    for kind in ("cosine", "logsigmoid_cosine", "mse", "l1"):
        v = SemanticDistillLoss(kind)(p, t)["sem/distill"]
        assert v.dim() == 0 and torch.isfinite(v)
    assert SemanticDistillLoss("cosine")(t, t)["sem/distill"] < 1e-5
