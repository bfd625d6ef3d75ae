"""The defense: classify the generator's projection of an image instead of the image.

Three ways in, one projection behind them all:

- ``defend(classifier, generator)``: an ``nn.Module``, images in [0, 1] -> logits;
- ``art_defense.DefenseGANPreprocessor``: the same projection as an ART preprocessor;
- ``art_defense.art_classifier(classifier, generator)``: an ART ``PyTorchClassifier`` using it.

``gan_defense`` builds the ``Defense`` an attack evaluation needs: the deployed
projection, seeded, that scores, and the attacker's projection, unseeded (and
possibly cheaper, or warm-started: ``WarmStartProjector``), that BPDA
attackers differentiate.

ART lives in its own module so that importing the library does not pay ART's
multi-second import.

Gradients pass the projection as the identity, which is BPDA (Athalye et al.
2018): 200 descent steps are not usefully differentiable, and the
identity is what a defense-aware attacker substitutes for them.

A classifier and a generator loaded from checkpoints of different datasets
are refused (``checkpoints.check_trained_on``).
"""
from __future__ import annotations

import contextlib
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


class WarmStartProjector(nn.Module):
    """The attacker's projection inside an iterative attack, warm-started: within ``session(images)``, each input
    descends ``warm_L`` steps (one restart) from the latent its image reached in the previous call.

    An attack moves each image a little per iteration, so the previous
    iteration's latent is a far better start than a random one, and a few
    steps replace a cold projection. ``session(images)`` starts each image
    from a cold ``L``, ``R`` projection of the clean ``images``; every input
    is matched to its nearest clean image (L-inf: an iterate stays within eps
    of its own, and distinct images lie far apart), so ART may call with any
    batch, subset or order of them. Outside a session it is a cold
    ``Projector(L, R)``. Options as in ``project``; gradients pass as the
    identity (BPDA).
    """

    def __init__(self, generator: nn.Module, L: int = 50, R: int = 2, warm_L: int = 10, **options):
        super().__init__()
        self.cold = Projector(generator, L, R, **options)
        self.generator, self.warm_L, self.options = generator, warm_L, options
        self.clean: torch.Tensor | None = None  # (N, C*H*W) the session's clean images
        self.latents: torch.Tensor | None = None  # (N, latent_dim) each one's latest latent

    @contextlib.contextmanager
    def session(self, images: torch.Tensor):
        """One attack run on ``images``: their latents start cold and are forgotten at the end."""
        self.clean = images.detach().flatten(1).float()
        self.latents = project(self.generator, images, self.cold.L, self.cold.R, **self.options).z
        try:
            yield self
        finally:
            self.clean = self.latents = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clean is None:
            return self.cold(x)
        origin = torch.cdist(x.detach().flatten(1).float(), self.clean.to(x.device), p=float("inf")).argmin(1)
        result = project(self.generator, x, self.warm_L, 1, z0=self.latents[origin][:, None], **self.options)
        self.latents[origin] = result.z
        return _IdentityGradient.apply(x, result.images)


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


def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             purify: nn.Module | None = None) -> float:
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
                attacker_L: int | None = None, attacker_R: int | None = None, attacker_warm_L: int | None = None,
                **options) -> Defense:
    """Defense-GAN as evaluated: seeded projections to score, unseeded ones to attack; options as in ``project``.

    ``attacker_L`` and ``attacker_R`` (default: ``L``, ``R``) set the
    attacker's projection alone (``Defense.attacked``, what BPDA attacks
    differentiate): a cheaper approximation of the defense for its gradients.
    ``attacker_warm_L`` warm-starts it (``WarmStartProjector``): within an
    attack, each image's projection takes ``attacker_warm_L`` steps from its
    previous latent, after one cold ``attacker_L``, ``attacker_R`` projection.
    Scores always come from the full ``L``, ``R`` projection.
    """
    L, R = positive_int(L, "L"), positive_int(R, "R")
    attacker_L = L if attacker_L is None else positive_int(attacker_L, "attacker_L")
    attacker_R = R if attacker_R is None else positive_int(attacker_R, "attacker_R")
    description = {"name": "defense-gan", "L": L, "R": R, "attacker_L": attacker_L, "attacker_R": attacker_R}
    if attacker_warm_L is None:
        attacked = Projector(generator, attacker_L, attacker_R, **options)
    else:
        description["attacker_warm_L"] = positive_int(attacker_warm_L, "attacker_warm_L")
        attacked = WarmStartProjector(generator, attacker_L, attacker_R, description["attacker_warm_L"], **options)
    return Defense(
        purify=Projector(generator, L, R, seed=seed, progress=progress, **options),
        attacked=attacked,
        description={**description, "seed": seed, "options": options},
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
