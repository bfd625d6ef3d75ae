"""Sanity checks of an attack evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness", Sec. 5).

A defended accuracy is only an upper bound on robustness if the attack
behind it works. These checks catch attacks that fail, most often through
gradient masking, using PGD (the dataset's settings, with any overrides)
under an adaptive threat model, BPDA by default:

- ``accuracy falls as eps grows``: PGD at 1/4, 1/2, 1 and 2 x eps; no rise
  beyond the tolerance, and an overall fall (unless already near 0);
- ``unbounded attack succeeds``: PGD at eps 1 (any image in [0, 1] reachable)
  leaves at most ``near_zero`` accuracy;
- ``pgd at least as strong as fgsm``: at the same eps;
- ``attack has converged``: PGD with twice the iterations within the
  tolerance of PGD; lower means the row's attack stopped too early and its
  accuracy overstates robustness, higher means the attack is unstable.

PGD's step scales with its eps, so every run keeps the source's reach.
"""
from __future__ import annotations

import json
from typing import Callable

import torch
from torch import nn

from attacks import attack_settings
from defense_hgan.defense import Defense
from defense_hgan.scoring import attack_row

EPS_SCALES = (0.25, 0.5, 1.0, 2.0)
SLACK = 1e-9  # accuracies are k / n in floats: 0.64 - 0.62 is 0.020000000000000018, and must pass a 0.02 tolerance
Measure = Callable[[str, str, dict], dict]  # (attack, threat, ART overrides) -> its result row on the images


def sanity_checks(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
                  dataset: str, threat: str = "bpda", settings: dict | None = None, eot_samples: int = 5,
                  seed: int = 0, tolerance: float = 0.02, near_zero: float = 0.1, progress: bool = False,
                  measure: Measure | None = None) -> dict:
    """Run the checks; returns {threat, attack, tolerance, near_zero, passed, checks: [{name, passed, detail, values}]}.

    ``tolerance`` is the accuracy rise forgiven as noise; ``settings`` maps
    attack names to overrides, as in ``evaluation.evaluate``. ``measure``
    returns the result row of one attack (its ART overrides, the run's merged
    in) under ``threat`` on these images; by default a fresh ``attack_row``.
    ``evaluate`` passes one that reuses its rows and saves every new one, so
    interrupted checks resume.
    """
    settings = settings or {}
    pgd = attack_settings("pgd", dataset, **settings.get("pgd", {}))
    if measure is None:
        def measure(attack: str, threat: str, overrides: dict) -> dict:
            return attack_row(classifier, defense, images, labels, attack=attack, threat=threat, dataset=dataset,
                              settings=overrides, eot_samples=eot_samples, seed=seed, progress=progress)
    cache: dict = {}

    def accuracy(attack: str, **changes) -> float:
        chosen = {**settings.get(attack, {}), **changes}
        key = (attack, json.dumps(attack_settings(attack, dataset, **chosen), sort_keys=True))
        if key not in cache:
            cache[key] = measure(attack, threat, chosen)["accuracy_defended"]
        return cache[key]

    def pgd_at(eps: float, iterations: int = pgd["max_iter"]) -> float:
        return accuracy("pgd", eps=eps, eps_step=pgd["eps_step"] * (eps / pgd["eps"]), max_iter=iterations)

    grid = [min(1.0, scale * pgd["eps"]) for scale in EPS_SCALES]
    curve = [pgd_at(eps) for eps in grid]
    unbounded = pgd_at(1.0)
    fgsm = accuracy("fgsm", eps=pgd["eps"])
    longer = pgd_at(pgd["eps"], 2 * pgd["max_iter"])
    at_eps = curve[EPS_SCALES.index(1.0)]

    rises = all(b <= a + tolerance + SLACK for a, b in zip(curve, curve[1:]))
    falls = curve[-1] < curve[0] - tolerance or curve[0] <= near_zero + SLACK
    checks = [
        _check("accuracy falls as eps grows", rises and falls,
               f"PGD accuracy {_fmt(curve)} at eps {_fmt(grid)}", {"eps": grid, "accuracy": curve}),
        _check("unbounded attack succeeds", unbounded <= near_zero + SLACK,
               f"PGD at eps 1.0 leaves accuracy {unbounded:.3f} (should be <= {near_zero})",
               {"eps": 1.0, "accuracy": unbounded}),
        _check("pgd at least as strong as fgsm", at_eps <= fgsm + tolerance + SLACK,
               f"at eps {pgd['eps']:.4g}: PGD {at_eps:.3f}, FGSM {fgsm:.3f}",
               {"eps": pgd["eps"], "pgd": at_eps, "fgsm": fgsm}),
        _check("attack has converged", abs(longer - at_eps) <= tolerance + SLACK,
               f"PGD {pgd['max_iter']} iterations {at_eps:.3f}, {2 * pgd['max_iter']} iterations {longer:.3f} "
               f"(should differ by <= {tolerance})",
               {"iterations": [pgd["max_iter"], 2 * pgd["max_iter"]], "accuracy": [at_eps, longer]}),
    ]
    return {"threat": threat, "attack": "pgd", "tolerance": tolerance, "near_zero": near_zero,
            "passed": all(c["passed"] for c in checks), "checks": checks}


def sanity_settings(dataset: str, settings: dict) -> dict:
    """What the checks' results depend on beyond the run's identity: PGD's and FGSM's settings."""
    return {attack: attack_settings(attack, dataset, **settings.get(attack, {})) for attack in ("pgd", "fgsm")}


def _check(name: str, passed: bool, detail: str, values: dict) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail, "values": values}


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"
