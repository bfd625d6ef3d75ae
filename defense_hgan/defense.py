"""The defense: classify the generator's projection of an image instead of the image.

Three ways in, one projection behind them all:

- ``defend(classifier, generator)``: an ``nn.Module``, images in [0, 1] -> logits;
- ``art_defense.DefenseGANPreprocessor``: the same projection as an ART preprocessor;
- ``art_defense.art_classifier(classifier, generator)``: an ART ``PyTorchClassifier`` using it.

``gan_defense`` builds the ``Defense`` an attack evaluation needs: the deployed
projection, seeded, that scores, and the attacker's projection, unseeded (and
possibly cheaper), that BPDA attackers differentiate.

ART lives in its own module so that importing the library does not pay ART's
multi-second import.

Gradients pass the projection as the identity, which is BPDA (Athalye et al.
2018): 200 descent steps are not usefully differentiable, and the
identity is what a defense-aware attacker substitutes for them.

A classifier and a generator loaded from checkpoints of different datasets
are refused (``checkpoints.check_trained_on``).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

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


@torch.no_grad()
def correct(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, purify: nn.Module | None = None,
            batch_size: int = 500) -> torch.Tensor:
    """Per-image hits (bool, N) of the classifier on ``images``, through ``purify`` when given (one call)."""
    device = next(classifier.parameters()).device
    if purify is not None:
        images = purify(images.to(device))
    hits = [classifier(images[i : i + batch_size].to(device)).argmax(1).cpu() == labels[i : i + batch_size].cpu()
            for i in range(0, len(images), batch_size)]
    return torch.cat(hits)


def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, purify: nn.Module | None = None) -> float:
    """The fraction of ``images`` classified right (through ``purify`` when given), exactly as rows count it."""
    hits = correct(classifier, images, labels, purify)
    return int(hits.sum()) / len(hits)


@dataclass
class Defense:
    """A defense as evaluated: modules mapping images in [0, 1] to the images the classifier sees.

    ``purify`` scores (deterministic); ``attacked`` is what BPDA attackers
    differentiate, with fresh randomness each call and its own gradient.
    ``generator``, when there is one, is checked against the classifier's dataset.
    """

    purify: nn.Module
    attacked: nn.Module
    description: dict = field(default_factory=dict)
    generator: nn.Module | None = None


def gan_defense(generator: nn.Module, L: int = 200, R: int = 10, *, seed: int = 0, progress: bool = False,
                attacker_L: int | None = None, attacker_R: int | None = None, **options) -> Defense:
    """Defense-GAN as evaluated: seeded projections to score, unseeded ones to attack; options as in ``project``.

    ``attacker_L`` and ``attacker_R`` (default: ``L``, ``R``) set the
    attacker's projection alone (``Defense.attacked``, what BPDA attacks
    differentiate): a cheaper approximation of the defense for its gradients.
    Scores always come from the full ``L``, ``R`` projection.
    """
    L, R = positive_int(L, "L"), positive_int(R, "R")
    attacker_L = L if attacker_L is None else positive_int(attacker_L, "attacker_L")
    attacker_R = R if attacker_R is None else positive_int(attacker_R, "attacker_R")
    return Defense(
        purify=Projector(generator, L, R, seed=seed, progress=progress, **options),
        attacked=Projector(generator, attacker_L, attacker_R, **options),
        description={"name": "defense-gan", "L": L, "R": R, "attacker_L": attacker_L, "attacker_R": attacker_R,
                     "seed": seed, "options": options},
        generator=generator,
    )


def positive_int(value, name: str) -> int:
    """``value`` as a positive int (numpy integers too), or a ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1 or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number
