"""Adversarial and feature-matching losses for GAN codec training.

Inputs follow the discriminator convention of ``sonotok.discriminators``: a list of logit tensors (one
per sub-discriminator, any shape) and a list, per sub-discriminator, of lists of feature maps. Each
loss is averaged over sub-discriminators, so its scale does not depend on how many there are.

Keys: ``adv/gen`` (generator), ``adv/feat`` (feature matching), ``adv/disc`` (discriminator).

References:
    - Lim & Ye, "Geometric GAN", 2017 (hinge loss); Mao et al., "Least Squares Generative Adversarial
      Networks", ICCV 2017 (LSGAN).
    - Kong et al., "HiFi-GAN", NeurIPS 2020 (LSGAN + feature matching for vocoders).
    - Kumar et al., "MelGAN", NeurIPS 2019 (feature matching on discriminator layers).
    - Défossez et al., "High Fidelity Neural Audio Compression" (EnCodec), TMLR 2023 (hinge loss and
      feature matching normalized by the mean absolute value of the real features).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GeneratorAdversarialLoss", "DiscriminatorAdversarialLoss", "FeatureMatchingLoss"]

_KINDS = ("hinge", "lsgan")


def _check_kind(kind: str, name: str) -> str:
    if kind not in _KINDS:
        raise ValueError(f"{name}: kind must be one of {_KINDS}, got {kind!r}")
    return kind


def _check_logits(logits: Sequence[Tensor], name: str) -> None:
    if len(logits) == 0:
        raise ValueError(f"{name}: got an empty list of discriminator logits")


class GeneratorAdversarialLoss(nn.Module):
    """Generator side of the adversarial game: make the discriminators call fakes real.

    - ``hinge``: ``mean(relu(1 - D(G(z))))`` (EnCodec);
    - ``lsgan``: ``mean((1 - D(G(z)))^2)`` (HiFi-GAN, DAC).

    Args:
        kind: ``"hinge"`` or ``"lsgan"``.
    """

    def __init__(self, kind: str = "hinge"):
        super().__init__()
        self.kind = _check_kind(kind, type(self).__name__)

    def forward(self, fake_logits: Sequence[Tensor]) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            fake_logits: discriminator logits on generated audio, one tensor per sub-discriminator.

        Returns:
            ``{"adv/gen": scalar}``.
        """
        _check_logits(fake_logits, type(self).__name__)
        terms = []
        for f in fake_logits:
            f = f.float()
            terms.append(F.relu(1.0 - f).mean() if self.kind == "hinge" else (1.0 - f).square().mean())
        return {"adv/gen": torch.stack(terms).mean()}


class DiscriminatorAdversarialLoss(nn.Module):
    """Discriminator side: score real audio high and generated audio low.

    - ``hinge``: ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``;
    - ``lsgan``: ``mean((1 - D(x))^2) + mean(D(G(z))^2)``.

    Pass fake logits computed on detached generator output.

    Args:
        kind: ``"hinge"`` or ``"lsgan"``.
    """

    def __init__(self, kind: str = "hinge"):
        super().__init__()
        self.kind = _check_kind(kind, type(self).__name__)

    def forward(self, real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            real_logits: logits on real audio, one tensor per sub-discriminator.
            fake_logits: logits on generated audio, same structure.

        Returns:
            ``{"adv/disc": scalar}``.
        """
        name = type(self).__name__
        _check_logits(real_logits, name)
        if len(real_logits) != len(fake_logits):
            raise ValueError(f"{name}: {len(real_logits)} real vs {len(fake_logits)} fake logit tensors")
        terms = []
        for r, f in zip(real_logits, fake_logits):
            r, f = r.float(), f.float()
            if self.kind == "hinge":
                terms.append(F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean())
            else:
                terms.append((1.0 - r).square().mean() + f.square().mean())
        return {"adv/disc": torch.stack(terms).mean()}


class FeatureMatchingLoss(nn.Module):
    """L1 distance between discriminator feature maps of real and generated audio.

    For each sub-discriminator the per-layer L1 is averaged over its layers, then averaged over
    sub-discriminators. With ``normalize=True`` each layer's L1 is divided by the mean absolute value of
    the real feature map (EnCodec), which keeps all layers on a comparable scale. Real features are
    detached: no gradient flows into the reference.

    See Kumar et al. 2019 (MelGAN) and Défossez et al. 2023 (EnCodec).

    Args:
        normalize: divide each layer's L1 by ``mean|real|`` (EnCodec); plain mean when ``False``.
        eps: floor of the normalizer.
    """

    def __init__(self, normalize: bool = True, eps: float = 1e-8):
        super().__init__()
        self.normalize = bool(normalize)
        self.eps = float(eps)

    def forward(
        self, real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]
    ) -> dict[str, Tensor]:
        """Computes the loss.

        Args:
            real_features: per sub-discriminator, a list of feature maps on real audio.
            fake_features: the same structure on generated audio.

        Returns:
            ``{"adv/feat": scalar}``.
        """
        name = type(self).__name__
        if len(real_features) != len(fake_features) or not real_features:
            raise ValueError(
                f"{name}: {len(real_features)} real vs {len(fake_features)} fake feature lists (need > 0)"
            )
        per_disc = []
        for i, (rs, fs) in enumerate(zip(real_features, fake_features)):
            if len(rs) != len(fs) or not rs:
                raise ValueError(f"{name}: sub-discriminator {i} has {len(rs)} real vs {len(fs)} fake maps")
            layers = []
            for r, f in zip(rs, fs):
                if r.shape != f.shape:
                    raise ValueError(
                        f"{name}: feature shapes differ in sub-discriminator {i}: "
                        f"{tuple(r.shape)} vs {tuple(f.shape)}"
                    )
                r = r.detach().float()
                d = F.l1_loss(f.float(), r)
                if self.normalize:
                    d = d / r.abs().mean().clamp(min=self.eps)
                layers.append(d)
            per_disc.append(torch.stack(layers).mean())
        return {"adv/feat": torch.stack(per_disc).mean()}
