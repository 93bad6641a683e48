import pytest
import torch

from sonotok.losses.adversarial import (
    DiscriminatorAdversarialLoss,
    FeatureMatchingLoss,
    GeneratorAdversarialLoss,
)


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_discriminator_loss_prefers_a_perfect_discriminator(kind):
    loss = DiscriminatorAdversarialLoss(kind)
    shape = (2, 1, 10)
    perfect = loss([torch.ones(shape), torch.ones(4)], [-torch.ones(shape), -torch.ones(4)])
    if kind == "lsgan":
        perfect = loss([torch.ones(shape), torch.ones(4)], [torch.zeros(shape), torch.zeros(4)])
    confused = loss([torch.zeros(shape), torch.zeros(4)], [torch.zeros(shape), torch.zeros(4)])
    wrong = loss([-torch.ones(shape), -torch.ones(4)], [torch.ones(shape), torch.ones(4)])
    assert set(perfect) == {"adv/disc"}
    assert perfect["adv/disc"].item() == pytest.approx(0.0)
    assert perfect["adv/disc"] < confused["adv/disc"] < wrong["adv/disc"]


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_generator_loss_sign(kind):
    loss = GeneratorAdversarialLoss(kind)
    fooled = loss([torch.ones(2, 1, 5), torch.ones(3)])["adv/gen"]
    caught = loss([-torch.ones(2, 1, 5), -torch.ones(3)])["adv/gen"]
    assert fooled.item() == pytest.approx(0.0)
    assert caught > fooled
    logit = torch.full((2, 1, 5), -0.5, requires_grad=True)
    loss([logit])["adv/gen"].backward()
    assert (logit.grad < 0).all()  # gradient descent raises the fake logits


def test_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        GeneratorAdversarialLoss("wgan")


@pytest.mark.parametrize("normalize", [True, False])
def test_feature_matching(normalize):
    loss = FeatureMatchingLoss(normalize=normalize)
    real = [[torch.randn(2, 4, 10), torch.randn(2, 8, 5)], [torch.randn(2, 3, 7, 2)]]
    same = loss(real, [[f.clone() for f in fs] for fs in real])
    assert set(same) == {"adv/feat"}
    assert same["adv/feat"].item() == pytest.approx(0.0)
    fake = [[(f + 0.5).requires_grad_(True) for f in fs] for fs in real]
    real_req = [[f.clone().requires_grad_(True) for f in fs] for fs in real]
    out = loss(real_req, fake)["adv/feat"]
    assert out.item() > 0
    out.backward()
    assert fake[0][0].grad is not None
    assert real_req[0][0].grad is None  # real features are detached


def test_feature_matching_normalization_is_scale_free():
    loss = FeatureMatchingLoss(normalize=True)
    real = [[torch.randn(2, 4, 10)]]
    fake = [[real[0][0] * 1.5]]
    a = loss(real, fake)["adv/feat"]
    b = loss([[real[0][0] * 100]], [[fake[0][0] * 100]])["adv/feat"]
    assert a.item() == pytest.approx(b.item(), rel=1e-4)
