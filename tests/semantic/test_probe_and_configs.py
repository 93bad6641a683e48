import torch

from sonotok.semantic.probe import classification_probe, linear_probe, one_hot_codes


def test_linear_probe_scores():
    torch.manual_seed(0)
    x = torch.randn(400, 6)
    w = torch.randn(6, 3)
    y = x @ w + 0.01 * torch.randn(400, 3)
    good = linear_probe(x[:300], y[:300], x[300:], y[300:])
    bad = linear_probe(torch.randn(300, 6), y[:300], torch.randn(100, 6), y[300:])
    assert good["r2"] > 0.99 and good["cosine"] > 0.99
    assert bad["r2"] < 0.1
    codes = torch.randint(0, 5, (400,))
    oh = one_hot_codes(codes, 5)
    assert oh.shape == (400, 5)
    acc = classification_probe(oh[:300], codes[:300], oh[300:], codes[300:])
    assert acc["accuracy"] == 1.0


def test_presets_compose():
    from sonotok.training.train import compose_config

    for exp in ("xcodec_16k", "split_rvq_16k"):
        cfg = compose_config([f"experiment={exp}"])
        assert cfg.module_target.endswith("SemanticCodecLightningModule")
        assert cfg.loss.weights["sem/distill"] > 0
        assert cfg.semantic.dim == 384
