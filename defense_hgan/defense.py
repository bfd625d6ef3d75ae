"""The defense: classify the generator's projection of an image instead of the image.

Three ways in, one projection behind them all:

- ``defend(classifier, generator)``: an ``nn.Module``, images in [0, 1] -> logits;
- ``art_defense.DefenseGANPreprocessor``: the same projection as an ART preprocessor;
- ``art_defense.art_classifier(classifier, generator)``: an ART ``PyTorchClassifier`` using it.

ART lives in its own module so that importing the library does not pay ART's
multi-second import.

Gradients pass the projection as the identity, which is BPDA (Athalye et al.
2018): 200 descent steps are not usefully differentiable, and the
identity is what a defense-aware attacker substitutes for them.

A classifier and a generator loaded from checkpoints of different datasets
are refused (``checkpoints.check_trained_on``).
"""
from __future__ import annotations

import torch
from torch import nn

from defense_hgan.checkpoints import check_trained_on
from defense_hgan.projection import project


class Projector(nn.Module):
    """Images in [0, 1] -> their projections, with an identity gradient.

    Keyword options are those of ``defense_hgan.projection.project``; give
    ``seed`` to make every call deterministic.
    """

    def __init__(self, generator: nn.Module, L: int = 200, R: int = 10, **options):
        super().__init__()
        self.generator, self.L, self.R, self.options = generator, L, R, options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _IdentityGradient.apply(x, project(self.generator, x, self.L, self.R, **self.options).images)


class _IdentityGradient(torch.autograd.Function):
    """Forward: the projection; backward: the gradient unchanged (BPDA)."""

    @staticmethod
    def forward(ctx, x, projected):
        return projected.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class DefendedClassifier(nn.Module):
    """classifier(projection(x)): images in [0, 1] NCHW of any float dtype -> logits in the classifier's dtype."""

    def __init__(self, classifier: nn.Module, projector: Projector):
        super().__init__()
        self.classifier, self.projector = classifier, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projector(x)  # in x's dtype: float64 or float16 images must not reach a float32 conv
        weight = next(self.classifier.parameters(), None)
        return self.classifier(projected if weight is None else projected.to(weight.dtype))

    @torch.no_grad()
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstructions alone, (N, C, H, W) in [0, 1]."""
        return self.projector(x)


def defend(classifier: nn.Module, generator: nn.Module, L: int = 200, R: int = 10, **options) -> DefendedClassifier:
    """Defense-GAN around ``classifier``; options as in ``project`` (optimizer, lr, schedule, bf16, seed, ...).

    A classifier and a generator trained on different datasets are refused.

    Example::

        defended = defend(classifier, generator, L=200, R=10, seed=0)
        logits = defended(images)           # (N, classes)
        recon = defended.project(images)    # (N, C, H, W)
    """
    check_trained_on(classifier=classifier, generator=generator)
    return DefendedClassifier(classifier, Projector(generator, L, R, **options))
