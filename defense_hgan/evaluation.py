"""Attack evaluation: a classifier's accuracy, bare and defended, under ART attacks and threat models.

Threat models (what the attacker differentiates):

- ``oblivious``: the bare classifier; its adversarial images are then scored
  bare and through the defense (Defense-GAN's white-box setting).
- ``bpda``: classifier(defense(x)) with the defense's gradient replaced by the
  identity (Athalye et al. 2018); ``Projector``'s backward already is.
- ``bpda-eot``: BPDA against the expectation over the defense's randomness
  (its random restarts): the attacked model returns log E[softmax] over k
  independent projections of each image, so every gradient averages k draws.
  A module rather than ART's ``EoTPyTorch``, which projects one image at a
  time and returns k predictions per image.

Scoring always uses the deployed defense, a projection seeded with the run's
seed; the attacker's projections draw fresh starts from the (seeded) global
RNG, so it never sees the evaluator's restarts. Every row reseeds, so a row
does not depend on which rows ran before it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks import ATTACKS, attack_settings, build_attack
from defense_hgan.art_defense import art_classifier
from defense_hgan.defense import DefendedClassifier, Projector
from defense_hgan.devices import seed_everything

THREATS = ("oblivious", "bpda", "bpda-eot")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
SUBSET = "the first n images of the test set"


@dataclass
class Defense:
    """A defense as evaluated: modules mapping images in [0, 1] to the images the classifier sees.

    ``purify`` scores (deterministic); ``attacked`` is what BPDA attackers
    differentiate, with fresh randomness each call and its own gradient.
    """

    purify: nn.Module
    attacked: nn.Module
    description: dict = field(default_factory=dict)


def gan_defense(generator: nn.Module, L: int = 200, R: int = 10, *, seed: int = 0, progress: bool = False,
                **options) -> Defense:
    """Defense-GAN as evaluated: seeded projections to score, unseeded ones to attack; options as in ``project``."""
    return Defense(
        purify=Projector(generator, L, R, seed=seed, progress=progress, **options),
        attacked=Projector(generator, L, R, **options),
        description={"name": "defense-gan", "L": L, "R": R, "seed": seed, "options": options},
    )


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


def threat_estimator(threat: str, classifier: nn.Module, defense: Defense, input_shape: tuple[int, int, int],
                     nb_classes: int = 10, eot_samples: int = 5):
    """The ART classifier an attacker under ``threat`` differentiates."""
    models = {
        "oblivious": lambda: classifier,
        "bpda": lambda: DefendedClassifier(classifier, defense.attacked),
        "bpda-eot": lambda: ExpectedDefended(classifier, defense.attacked, eot_samples),
    }
    model = models[check_names([threat], THREATS, "threat model")[0]]()
    return art_classifier(model, input_shape=tuple(input_shape), nb_classes=nb_classes)


def check_names(names, valid, what: str) -> list[str]:
    """``names`` (a list or a comma-separated string) as a list, or a ValueError naming the valid choices."""
    names = [s.strip() for s in names.split(",")] if isinstance(names, str) else [str(s).strip() for s in names]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown or names}; expected some of {list(valid)}")
    return names


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion: sound near 0 and 1 and for small n."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def attack_row(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
               attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
               seed: int = 0, progress: bool = False) -> dict:
    """One result row: craft adversarial images under ``threat``, score them bare and defended.

    ``attack="none"`` scores the clean images (the "no attack" row).
    """
    start = time.perf_counter()
    seed_everything(seed)
    if attack == "none":
        adversarial, used = images, {}
    else:
        used = attack_settings(attack, dataset, **(settings or {}))
        estimator = threat_estimator(threat, classifier, defense, images.shape[1:], _classes(classifier, images),
                                     eot_samples)
        generated = build_attack(attack, estimator, dataset, verbose=progress, **used).generate(
            x=images.cpu().numpy(), y=labels.cpu().numpy())
        adversarial = torch.from_numpy(generated).to(images.device, images.dtype)
        if threat == "bpda-eot":
            used = {**used, "eot_samples": eot_samples}
    undefended = correct(classifier, adversarial, labels)
    defended = correct(classifier, adversarial, labels, defense.purify)
    row = {"attack": attack, "threat": threat, "settings": used, "seed": seed, "n": len(labels)}
    for name, hits in (("undefended", undefended), ("defended", defended)):
        row[f"accuracy_{name}"] = hits.float().mean().item()
        row[f"interval_{name}"] = list(wilson_interval(int(hits.sum()), len(hits)))
    return {**row, "seconds": round(time.perf_counter() - start, 2)}


def evaluate(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
             dataset: str, attacks=ATTACKS, threats=("oblivious", "bpda"), settings: dict | None = None,
             eot_samples: int = 5, seed: int = 0, test_set_size: int | None = None, sanity: bool = False,
             progress: bool = True) -> dict:
    """Every attack under every threat model, plus the no-attack row; as ``report.write_results`` writes them.

    ``settings`` maps attack names to ART overrides; ``sanity`` adds
    ``defense_hgan.sanity.sanity_checks`` (under BPDA) as ``results["sanity"]``.
    """
    from tqdm.auto import tqdm

    attacks = check_names(attacks, ATTACKS, "attack")
    threats = check_names(threats, THREATS, "threat model")
    if settings:
        check_names(list(settings), ATTACKS, "attack in settings")
    classifier.eval()
    start = time.perf_counter()
    runs = [("none", "none")] + [(a, t) for a in attacks for t in threats]
    rows = []
    for attack, threat in tqdm(runs, desc="evaluate", unit="run", disable=not progress):
        rows.append(attack_row(classifier, defense, images, labels, attack=attack, threat=threat, dataset=dataset,
                               settings=(settings or {}).get(attack), eot_samples=eot_samples, seed=seed,
                               progress=progress))
    results = {
        "dataset": dataset,
        "subset": {"n": len(labels), "of": test_set_size, "selection": SUBSET},
        "seed": seed,
        "confidence_level": 0.95,
        "defense": defense.description,
        "attacks": attacks,
        "threats": threats,
        "eot_samples": eot_samples,
        "rows": rows,
        "sanity": None,
    }
    if sanity:
        from defense_hgan.sanity import sanity_checks

        results["sanity"] = sanity_checks(classifier, defense, images, labels, dataset=dataset, settings=settings,
                                          eot_samples=eot_samples, seed=seed, progress=progress)
    results["seconds"] = round(time.perf_counter() - start, 2)
    return results


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


def _classes(classifier: nn.Module, images: torch.Tensor) -> int:
    """The classifier's number of outputs, from one image."""
    with torch.no_grad():
        return classifier(images[:1].to(next(classifier.parameters()).device)).shape[1]
