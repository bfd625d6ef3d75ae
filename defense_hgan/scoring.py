"""Result rows: a classifier's accuracy, bare and defended, on one attack's images, with Wilson intervals.

A row is ``{attack, threat, settings, seed, n, correct_*, accuracy_*,
interval_*, seconds}`` for ``*`` in undefended, defended, with
``cached_images`` when some of its adversarial images were read from an
``adversarial_cache.AdversarialCache``. ``attack_row``
crafts and scores one; ``merge_rows`` adds up rows measured on disjoint
chunks of the same images. Every row reseeds, so a row does not depend on
which rows ran before it.
"""
from __future__ import annotations

import math
import time
from functools import partial

import torch
from torch import nn

from attacks import attack_settings
from attacks.threats import craft
from defense_hgan.adversarial_cache import AdversarialCache, cacheable
from defense_hgan.defense import Defense, correct
from defense_hgan.devices import seed_everything

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
ADAPTIVE = ("bpda", "bpda-eot")  # the threat models whose attacker uses the defense's attacker projection
ATTACKER = ("attacker_L", "attacker_R", "attacker_warm_L")  # what a row records of the attacker's projection


def attack_row(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
               attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
               seed: int = 0, progress: bool = False, cache: AdversarialCache | None = None) -> dict:
    """One result row: craft adversarial images under ``threat``, score them bare and defended.

    ``attack="none"`` scores the clean images (the "no attack" row). With ``cache``, oblivious adversarial
    images are read from it when there and kept in it when crafted.
    """
    start = time.perf_counter()
    seed_everything(seed)
    used = row_settings(attack, threat, dataset, settings, eot_samples, defense)

    crafted = partial(craft, classifier, defense, images, labels, attack=attack, threat=threat, dataset=dataset,
                      settings=settings, eot_samples=eot_samples, progress=progress)
    from_cache = False
    if attack == "none":
        adversarial = images
    elif cache is not None and cacheable(attack, threat):
        adversarial, from_cache = cache.oblivious(classifier, images, labels, crafted, dataset=dataset, attack=attack,
                                                  settings=used, seed=seed)
    else:
        adversarial = crafted()
    hits = {"undefended": int(correct(classifier, adversarial, labels).sum()),
            "defended": int(correct(classifier, adversarial, labels, defense.purify).sum())}
    row = {"attack": attack, "threat": threat, "settings": used, "seed": seed}
    if from_cache:
        row["cached_images"] = len(labels)
    return scored_row(row, len(labels), hits, time.perf_counter() - start)


def row_settings(attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
                 defense: Defense | None = None) -> dict:
    """The settings a row records: the attack's ART settings, with ``eot_samples`` under bpda-eot and the
    attacker's projection (the defense's ``attacker_L``, ``attacker_R`` and, when set, ``attacker_warm_L``)
    under bpda and bpda-eot."""
    if attack == "none":
        return {}
    used = attack_settings(attack, dataset, **(settings or {}))
    if threat == "bpda-eot":
        used["eot_samples"] = eot_samples
    if threat in ADAPTIVE and defense is not None:
        used.update({k: defense.description[k] for k in ATTACKER if k in defense.description})
    return used


def merge_rows(parts: list[dict]) -> dict:
    """One row from rows of the same attack and threat on disjoint chunks of images: counts add up."""
    hits = {which: sum(part[f"correct_{which}"] for part in parts) for which in ("undefended", "defended")}
    row = {**parts[0], "cached_images": sum(part.get("cached_images", 0) for part in parts)}
    return scored_row(row, sum(part["n"] for part in parts), hits, sum(part["seconds"] for part in parts))


def scored_row(row: dict, n: int, hits: dict, seconds: float) -> dict:
    """``row`` with n, the hit counts, accuracies, Wilson intervals and seconds of ``hits`` out of ``n`` images
    (and how many of their adversarial images were read from an ``AdversarialCache``, when any were)."""
    row = {k: row[k] for k in ("attack", "threat", "settings", "seed")} | {"n": n} | (
        {"cached_images": row["cached_images"]} if row.get("cached_images") else {})
    for which, count in hits.items():
        row[f"correct_{which}"] = count
        row[f"accuracy_{which}"] = count / n
        row[f"interval_{which}"] = list(wilson_interval(count, n))
    return {**row, "seconds": round(seconds, 2)}


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion: sound near 0 and 1 and for small n."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def interval_text(value: float, interval, digits: int = 3) -> str:
    """'0.990 [0.977, 0.996]': how every table here writes a proportion and its interval."""
    low, high = interval
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def difference_text(difference: float, interval, digits: int = 3) -> str:
    """'+0.012 [-0.024, +0.048]': how every table here writes a signed difference and its interval."""
    low, high = interval
    return f"{difference:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def proportion_text(correct: int, n: int, digits: int = 3) -> str:
    """correct / n with its Wilson interval, as interval_text writes it."""
    return interval_text(correct / n, wilson_interval(correct, n), digits)


def difference_interval(correct_a: int, n_a: int, correct_b: int, n_b: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's interval for p_a - p_b from two Wilson intervals (his method 10).

    Built for independent samples; on the same images (positively correlated
    outcomes) it is wider than a paired interval, so a difference it excludes
    from 0 is a safe call.
    """
    p_a, p_b = correct_a / n_a, correct_b / n_b
    low_a, high_a = wilson_interval(correct_a, n_a, z)
    low_b, high_b = wilson_interval(correct_b, n_b, z)
    difference = p_a - p_b
    return (difference - math.hypot(p_a - low_a, high_b - p_b), difference + math.hypot(high_a - p_a, p_b - low_b))
