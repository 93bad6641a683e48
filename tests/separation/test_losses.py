import torch

from sonotok.data.mixtures import fixed_test_set
from sonotok.evaluation.separation import evaluate_separation, oracle_masks
from sonotok.losses.separation import PITSISNRLoss, pit_sisnr, sisnr_improvement


def test_pit_loss_permutation_invariant():
    ref = torch.randn(3, 3, 800)
    est = ref + 0.1 * torch.randn_like(ref)
    loss = PITSISNRLoss()
    a = loss(est, ref)["sep/sisnr"]
    b = loss(est[:, [2, 0, 1]], ref)["sep/sisnr"]
    assert torch.allclose(a, b, atol=1e-5)
    assert a < -15  # about -20 dB
    best, perm = pit_sisnr(est[:, [1, 2, 0]], ref)
    assert perm.tolist() == [[2, 0, 1]] * 3


def test_pit_loss_gradient_and_clamp():
    ref = torch.randn(2, 2, 400)
    est = (ref + 0.5 * torch.randn_like(ref)).requires_grad_()
    PITSISNRLoss()(est, ref)["sep/sisnr"].backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()
    assert PITSISNRLoss(clamp_db=5.0)(ref, ref)["sep/sisnr"] == -5.0


def test_oracles_beat_mixture(fake_corpus):
    ds = fixed_test_set(fake_corpus / "test.jsonl", 3, segment_seconds=1.0)
    item = ds[0]
    est = oracle_masks(item["mix"][None], item["sources"][None], sample_rate=8000)
    for k, e in est.items():
        assert sisnr_improvement(e, item["sources"][None], item["mix"][None]).item() > 0, k
    res = evaluate_separation(None, ds, oracles=("irm", "ibm"), sample_rate=8000)
    assert res["irm"]["sisnri"] > 0 and res["ibm"]["sisnri"] > 0 and res["irm"]["sdri"] > 0
