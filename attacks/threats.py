"""Threat models: what an attacker differentiates, behind one call, ``attack(images, labels) -> adversarial images``.

- ``oblivious``: the bare classifier; its adversarial images are then scored
  bare and through the defense (Defense-GAN's white-box setting).
- ``bpda``: classifier(defense(x)) with the defense's gradient replaced by the
  identity (Athalye et al. 2018); ``Projector``'s backward already is.
- ``bpda-eot``: BPDA against the expectation over the defense's randomness
  (its random restarts): the attacked model returns log E[softmax] over k
  independent projections of each image, so every gradient averages k draws.
  A module rather than ART's ``EoTPyTorch``, which projects one image at a
  time and returns k predictions per image.

The attacker's projections (``Defense.attacked``) draw fresh starts from the
(seeded) global RNG, so the attacker never sees the scorer's restarts. A
warm-started one (``defense.WarmStartProjector``, bpda only) keeps each
image's latent from one call to the next for the length of one attack run.

``autoattack`` is AutoAttack's worst case (Croce & Hein 2020) over
``attacks.AUTOATTACK`` (APGD-CE, APGD-DLR, Square), each under the same
threat model: the attacks run in turn on the images the deployed defense
still classifies right, and an image stays robust only if every attack
fails on it. Run by hand, not by ART's ``AutoAttack``, which judges success
with the attacked estimator (the attacker's randomised projection, not the
deployed one) and imports ``multiprocess`` even when run serially.

Images and labels are tensors in and out (NCHW in [0, 1], on any device); the
numpy round trip ART needs stays inside.

    attack = make_attack("pgd", "bpda", classifier, defense, dataset="mnist")
    adversarial = attack(images, labels)
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from attacks import ATTACKS, AUTOATTACK, attack_settings, build_attack
from defense_hgan.defense import Defense, DefendedClassifier, WarmStartProjector, correct

THREATS = ("oblivious", "bpda", "bpda-eot")


class ExpectedDefended(nn.Module):
    """log E_k[softmax(classifier(defense(x)))] over ``samples`` independent draws of the defense (EOT).

    The copies go through the defense as one batch; a randomised defense
    draws each copy's randomness independently.
    """

    def __init__(self, classifier: nn.Module, defense: nn.Module, samples: int):
        super().__init__()
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"eot samples must be a positive integer, got {samples!r}")
        self.classifier, self.defense, self.samples = classifier, defense, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.defense(x.repeat(self.samples, 1, 1, 1)))
        log_probs = logits.log_softmax(-1).view(self.samples, len(x), -1)
        return torch.logsumexp(log_probs, 0) - math.log(self.samples)


def threat_estimator(threat: str, classifier: nn.Module, defense: Defense | None, input_shape: tuple[int, int, int],
                     nb_classes: int = 10, eot_samples: int = 5):
    """The ART classifier an attacker under ``threat`` differentiates."""
    from defense_hgan.art_defense import art_classifier

    models = {
        "oblivious": lambda: classifier,
        "bpda": lambda: DefendedClassifier(classifier, defense.attacked),
        "bpda-eot": lambda: ExpectedDefended(classifier, defense.attacked, eot_samples),
    }
    model = models[check_names([threat], THREATS, "threat model")[0]]()
    return art_classifier(model, input_shape=tuple(input_shape), nb_classes=nb_classes)


class ThreatAttack:
    """One ART attack under one threat model: ``attack(images, labels)`` -> adversarial images (tensors).

    ``settings`` are ART overrides of the attack's defaults (``attacks.attack_settings``).
    """

    def __init__(self, name: str, threat: str, classifier: nn.Module, defense: Defense | None = None, *,
                 dataset: str, settings: dict | None = None, eot_samples: int = 5, progress: bool = False):
        check_threat(threat, defense)
        self.name, self.threat, self.classifier, self.defense = name, threat, classifier, defense
        self.dataset, self.settings, self.eot_samples, self.progress = dataset, settings or {}, eot_samples, progress

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        estimator = threat_estimator(self.threat, self.classifier, self.defense, images.shape[1:],
                                     _classes(self.classifier, images), self.eot_samples)
        attack = build_attack(self.name, estimator, self.dataset, verbose=self.progress, **self.settings)
        warm = self.threat == "bpda" and isinstance(self.defense.attacked, WarmStartProjector)
        with self.defense.attacked.session(images) if warm else contextlib.nullcontext():
            generated = attack.generate(x=images.detach().cpu().numpy(), y=labels.cpu().numpy())
        return torch.from_numpy(generated).to(images.device, images.dtype)


class WorstCase:
    """Several attacks as one, AutoAttack's way: ``attack(images, labels)`` -> per image, the first attack's
    image that ``judge`` gets wrong, else the last attack's.

    ``judge(images, labels)`` is the per-image hits (bool, N) of the model
    scored; each attack runs only on the images it still gets right, so an
    image counts as robust only if every attack fails on it. ``judge`` sees
    the whole batch every time, so a defense seeded per position in the batch
    judges each image as the final score will.
    """

    def __init__(self, attacks: list, judge):
        self.attacks, self.judge = attacks, judge

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial, robust = images.clone(), self.judge(images, labels).to(images.device)
        for i, attack in enumerate(self.attacks):
            if not robust.any():
                break
            adversarial[robust] = attack(images[robust], labels[robust])
            if i < len(self.attacks) - 1:  # the last attack's images are scored as the row's
                robust &= self.judge(adversarial, labels).to(images.device)
        return adversarial


def make_attack(name: str, threat: str, classifier: nn.Module, defense: Defense | None = None, *, dataset: str,
                settings: dict | None = None, eot_samples: int = 5, progress: bool = False):
    """The attack ``name`` (of ``attacks.ATTACKS``) under ``threat``, as a call ``(images, labels) -> adversarial``.

    ``autoattack`` is the ``WorstCase`` of its parts, judged by the deployed
    defense (``defense.purify``; the bare classifier when there is none).
    """
    check_names([name], ATTACKS, "attack")
    check_names([threat], THREATS, "threat model")
    options = {"dataset": dataset, "eot_samples": eot_samples, "progress": progress}
    if name != "autoattack":
        return ThreatAttack(name, threat, classifier, defense, settings=settings, **options)
    parts = attack_settings(name, dataset, **(settings or {}))
    purify = defense.purify if defense is not None else None
    return WorstCase([ThreatAttack(part, threat, classifier, defense, settings=parts[part], **options)
                      for part in AUTOATTACK], lambda images, labels: correct(classifier, images, labels, purify))


def craft(classifier: nn.Module, defense: Defense | None, images: torch.Tensor, labels: torch.Tensor, *,
          attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
          progress: bool = False) -> torch.Tensor:
    """Adversarial images of ``attack`` under ``threat`` in one call (``defense`` may be None under oblivious)."""
    return make_attack(attack, threat, classifier, defense, dataset=dataset, settings=settings,
                       eot_samples=eot_samples, progress=progress)(images, labels)


def check_threat(threat: str, defense: Defense | None) -> None:
    """A ValueError for a threat model this defense cannot be attacked under."""
    if threat in ("bpda", "bpda-eot") and defense is None:
        raise ValueError(f"the {threat} threat model attacks a defense, but none was given")
    if threat == "bpda-eot" and isinstance(defense.attacked, WarmStartProjector):
        raise ValueError("bpda-eot averages independent draws of the attacker's projection, but a warm-started one "
                         "(attacker_warm_L) draws none: each image starts from its own latent; use bpda")


def check_names(names, valid, what: str) -> list[str]:
    """``names`` (a list or a comma-separated string) as a list, or a ValueError naming the valid choices."""
    names = [s.strip() for s in names.split(",")] if isinstance(names, str) else [str(s).strip() for s in names]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown or names}; expected some of {list(valid)}")
    return names


def _classes(classifier: nn.Module, images: torch.Tensor) -> int:
    """The classifier's number of outputs, from one image."""
    with torch.no_grad():
        return classifier(images[:1].to(next(classifier.parameters()).device)).shape[1]
