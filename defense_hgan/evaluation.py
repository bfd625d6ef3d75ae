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
RNG, so it never sees the evaluator's restarts. The attacker's projection may
be a cheaper one (``gan_defense``'s ``attacker_L``, ``attacker_R``): BPDA needs
only its forward value, and an attacker may approximate the defense; the
scores still come from the full one. Every row reseeds, so a row does not
depend on which rows ran before it.

A row runs in chunks of images (``chunk``): each chunk is crafted and scored
on its own (reseeded, as a row is) and the row merges their counts. With
``out``, ``evaluate`` rewrites OUT/results.json and OUT/results.md
(atomically) after every finished chunk, and a rerun into the same OUT skips the
chunks, rows (and sanity checks) already there, so an interrupted evaluation
loses at most one chunk's work and attacks or threat models can be added later.
The sanity checks reuse the evaluation's rows where their settings match, and
measure the rest in chunks saved the same way (``sanity_partial`` until a
measurement is done, then ``sanity_rows``); their verdict is recomputed from
those rows on every run that asks for it, so a corrected check applies to
stored results without measuring anything again. It always
resumes, as ``sweep`` does; results of other settings (anything in the results
but the rows, the sanity checks and the progress fields) are refused. The
checkpoints are identified by the sha256 of their bytes, so ``./zoo/x.pt``
resumes what ``zoo/x.pt`` began and a file replaced at the same path is
refused; results of an older version, which recorded paths only, are refused
until their ``sha256`` is added by hand (the error gives it). OUT is locked
for the run, so a second evaluation into it is refused at once.
"""
from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks import ATTACKS, attack_settings, build_attack
from defense_hgan.art_defense import art_classifier
from defense_hgan.checkpoints import check_trained_on, checkpoint_difference, file_sha256
from defense_hgan.defense import DefendedClassifier, Projector
from defense_hgan.devices import seed_everything
from defense_hgan.locking import output_lock

THREATS = ("oblivious", "bpda", "bpda-eot")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
SUBSET = "the first n images of the test set"


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
    L, R = _positive(L, "L"), _positive(R, "R")
    attacker_L = L if attacker_L is None else _positive(attacker_L, "attacker_L")
    attacker_R = R if attacker_R is None else _positive(attacker_R, "attacker_R")
    return Defense(
        purify=Projector(generator, L, R, seed=seed, progress=progress, **options),
        attacked=Projector(generator, attacker_L, attacker_R, **options),
        description={"name": "defense-gan", "L": L, "R": R, "attacker_L": attacker_L, "attacker_R": attacker_R,
                     "seed": seed, "options": options},
        generator=generator,
    )


def _positive(value, name: str) -> int:
    """``value`` as a positive int (numpy integers too), or a ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1 or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


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


def row_settings(attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
                 defense: Defense | None = None) -> dict:
    """The settings a row records: the attack's ART settings, with ``eot_samples`` under bpda-eot and the
    attacker's projection (the defense's ``attacker_L``, ``attacker_R``) under bpda and bpda-eot."""
    if attack == "none":
        return {}
    used = attack_settings(attack, dataset, **(settings or {}))
    if threat == "bpda-eot":
        used["eot_samples"] = eot_samples
    if threat in ("bpda", "bpda-eot") and defense is not None:
        used.update({k: defense.description[k] for k in ("attacker_L", "attacker_R") if k in defense.description})
    return used


def craft(classifier: nn.Module, defense: Defense | None, images: torch.Tensor, labels: torch.Tensor, *,
          attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
          progress: bool = False) -> torch.Tensor:
    """Adversarial images of ``attack`` under ``threat`` (``defense`` may be None under oblivious)."""
    estimator = threat_estimator(threat, classifier, defense, images.shape[1:], _classes(classifier, images),
                                 eot_samples)
    generated = build_attack(attack, estimator, dataset, verbose=progress, **(settings or {})).generate(
        x=images.cpu().numpy(), y=labels.cpu().numpy())
    return torch.from_numpy(generated).to(images.device, images.dtype)


def attack_row(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
               attack: str, threat: str, dataset: str, settings: dict | None = None, eot_samples: int = 5,
               seed: int = 0, progress: bool = False) -> dict:
    """One result row: craft adversarial images under ``threat``, score them bare and defended.

    ``attack="none"`` scores the clean images (the "no attack" row).
    """
    start = time.perf_counter()
    seed_everything(seed)
    used = row_settings(attack, threat, dataset, settings, eot_samples, defense)
    adversarial = images if attack == "none" else craft(
        classifier, defense, images, labels, attack=attack, threat=threat, dataset=dataset, settings=settings,
        eot_samples=eot_samples, progress=progress)
    hits = {"undefended": int(correct(classifier, adversarial, labels).sum()),
            "defended": int(correct(classifier, adversarial, labels, defense.purify).sum())}
    row = {"attack": attack, "threat": threat, "settings": used, "seed": seed}
    return _scored(row, len(labels), hits, time.perf_counter() - start)


def merge_rows(parts: list[dict]) -> dict:
    """One row from rows of the same attack and threat on disjoint chunks of images: counts add up."""
    hits = {which: sum(part[f"correct_{which}"] for part in parts) for which in ("undefended", "defended")}
    return _scored(parts[0], sum(part["n"] for part in parts), hits, sum(part["seconds"] for part in parts))


def _scored(row: dict, n: int, hits: dict, seconds: float) -> dict:
    """``row`` with n, the hit counts, accuracies, Wilson intervals and seconds of ``hits`` out of ``n`` images."""
    row = {k: row[k] for k in ("attack", "threat", "settings", "seed")} | {"n": n}
    for which, count in hits.items():
        row[f"correct_{which}"] = count
        row[f"accuracy_{which}"] = count / n
        row[f"interval_{which}"] = list(wilson_interval(count, n))
    return {**row, "seconds": round(seconds, 2)}


def evaluate(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
             dataset: str, attacks=ATTACKS, threats=("oblivious", "bpda"), settings: dict | None = None,
             eot_samples: int = 5, seed: int = 0, test_set_size: int | None = None, sanity: bool = False,
             chunk: int = 100, progress: bool = True, out: str | os.PathLike | None = None,
             sources: dict | None = None, test_set_labels: torch.Tensor | None = None) -> dict:
    """Every attack under every threat model, plus the no-attack row; as ``report.write_results`` writes them.

    ``settings`` maps attack names to ART overrides; ``sanity`` adds
    ``defense_hgan.sanity.sanity_checks`` (under BPDA) as ``results["sanity"]``.
    ``sources`` names the checkpoints evaluated (e.g. ``{"classifier": path,
    "generator": path}``); it heads the results, with the sha256 of each file
    under ``results["sha256"]``. ``chunk`` images are attacked and scored at a
    time (and saved, with ``out``). The subset's label counts are recorded, and
    a subset far from the class balance of ``test_set_labels`` (the whole test
    set's labels, when given) is warned about. A classifier and a defense's
    generator trained on another dataset than ``dataset`` are refused.

    With ``out``, OUT is locked for the run (``locking.output_lock``), the
    results are written there after every chunk and resumed from there:
    chunks, rows and sanity checks already in OUT/results.json are kept, not
    remeasured (the sanity verdict is recomputed from its kept rows). A
    ValueError refuses an OUT holding results of other settings or other
    checkpoints (compared by sha256: a replaced file is refused, a path
    spelled otherwise is not). The results then also hold OUT's earlier rows
    of attacks or threat models not asked for this time.
    ``results["pending"]`` lists what is still to run (empty once the
    evaluation is complete).
    """
    from tqdm.auto import tqdm

    from defense_hgan.data import dataset_info, label_counts, warn_if_unbalanced
    from defense_hgan.report import read_results, write_results

    attacks = check_names(attacks, ATTACKS, "attack")
    threats = check_names(threats, THREATS, "threat model")
    settings = settings or {}
    if settings:
        check_names(list(settings), ATTACKS, "attack in settings")
    check_trained_on(dataset, classifier=classifier, generator=defense.generator)
    if test_set_labels is not None:
        warn_if_unbalanced(labels, test_set_labels, f"the subset evaluated (the first {len(labels)} test images)")
    sources = {name: str(path) for name, path in (sources or {}).items()}
    results = {
        **sources,
        "sha256": {name: file_sha256(path) for name, path in sources.items()},
        "dataset": dataset,
        "subset": {"n": len(labels), "of": test_set_size, "selection": SUBSET,
                   "label_counts": label_counts(labels, dataset_info(dataset).num_classes)},
        "seed": seed,
        "confidence_level": 0.95,
        "defense": defense.description,
        "eot_samples": eot_samples,
        "chunk": _positive(chunk, "chunk"),
    }
    with output_lock(out) if out is not None else contextlib.nullcontext():
        stored = read_results(out) if out is not None else None
        if stored is not None:
            _check_same_run(stored, results, list(sources), out)
            results.update({name: stored[name] for name in sources if name in stored})  # the first spelling stays
            if "label_counts" not in stored["subset"]:  # an older run's counts are unknown: never stamp new ones on
                results["subset"] = stored["subset"]
        sanity_used = _sanity_settings(dataset, settings)
        earlier = stored or {}
        partial = dict(earlier.get("partial") or {})  # the finished chunks of unfinished rows
        for row in earlier.get("rows", []) + [part for parts in partial.values() for part in parts]:
            expected = row_settings(row["attack"], row["threat"], dataset, settings.get(row["attack"]), eot_samples,
                                    defense)
            if _plain(row["settings"]) != _plain(expected):
                raise ValueError(f"{out} holds {row['attack']} under {row['threat']} with settings {row['settings']}, "
                                 f"but this run's are {expected}; rerun with the same settings to resume it, "
                                 f"or pass another --out")
        done = {(row["attack"], row["threat"]): row for row in earlier.get("rows", [])}
        previous_sanity = earlier.get("sanity")
        if previous_sanity is not None and _plain(previous_sanity.get("settings")) != _plain(sanity_used):
            raise ValueError(f"{out} holds sanity checks with settings {previous_sanity.get('settings')}, but "
                             f"this run's are {sanity_used}; rerun with the same settings to resume it, or pass "
                             f"another --out")
        kept = [*done, *(tuple(key.split("/")) for key in partial)]  # rows finished or with finished chunks, in order
        all_attacks = _with_earlier(attacks, earlier.get("attacks", []), [a for a, _ in kept])
        all_threats = _with_earlier(threats, earlier.get("threats", []), [t for _, t in kept])
        results.update({"attacks": all_attacks, "threats": all_threats, "pending": [], "partial": partial, "rows": [],
                        "sanity": previous_sanity, "sanity_rows": list(earlier.get("sanity_rows", [])),
                        "sanity_partial": dict(earlier.get("sanity_partial") or {}), "seconds": 0.0})
        runs = [("none", "none")] + [(a, t) for a in all_attacks for t in all_threats]
        wanted = [("none", "none")] + [(a, t) for a in attacks for t in threats]
        todo = [run for run in wanted if run not in done]

        def update() -> None:
            results["rows"] = [done[run] for run in runs if run in done]
            results["pending"] = [f"{a}/{t}" + _chunks_done(partial.get(f"{a}/{t}"), len(labels)) for a, t in runs
                                  if (a, t) not in done and ((a, t) in todo or f"{a}/{t}" in partial)]
            if sanity and results["sanity"] is None:
                results["pending"].append("sanity")
            unfinished = [part for chunks in (partial, results["sanity_partial"]) for parts in chunks.values()
                          for part in parts]
            timed = results["rows"] + results["sanity_rows"] + unfinished
            results["seconds"] = round(sum(entry["seconds"] for entry in timed), 2)
            if out is not None:
                write_results(results, out)

        update()
        if stored is not None and progress:
            print(f"{out}: resuming, {len(done)} rows there, {len(todo)} to run"
                  + (", then the sanity checks" if sanity and results["sanity"] is None else ""))
        classifier.eval()
        starts = range(0, len(labels), chunk)
        bar = tqdm(total=len(todo) * len(starts) - sum(len(partial.get(f"{a}/{t}", [])) for a, t in todo),
                   desc="evaluate", unit="chunk", disable=not progress)

        def chunked_row(attack: str, threat: str, overrides: dict | None, unfinished: dict, key: str,
                        after_chunk=lambda: None) -> dict:
            """The row on all images, resumed from its finished chunks in ``unfinished[key]``, which holds each new
            chunk (saved) until the row is done."""
            parts = unfinished.setdefault(key, [])
            for start in starts[len(parts):]:
                chunk_images, chunk_labels = images[start : start + chunk], labels[start : start + chunk]
                parts.append(attack_row(classifier, defense, chunk_images, chunk_labels, attack=attack, threat=threat,
                                        dataset=dataset, settings=overrides, eot_samples=eot_samples, seed=seed,
                                        progress=progress))
                update()
                after_chunk()
            del unfinished[key]
            return merge_rows(parts)

        for attack, threat in todo:
            done[attack, threat] = chunked_row(attack, threat, settings.get(attack), partial, f"{attack}/{threat}",
                                               bar.update)
            update()
        bar.close()
        if sanity:
            from defense_hgan.sanity import sanity_checks

            def measure(attack: str, threat: str, overrides: dict) -> dict:
                """A row of the evaluation or of earlier sanity checks with these settings, else a new, saved one."""
                used = _plain(row_settings(attack, threat, dataset, overrides, eot_samples, defense))
                for row in list(done.values()) + results["sanity_rows"]:
                    if (row["attack"], row["threat"]) == (attack, threat) and _plain(row["settings"]) == used:
                        return row
                key = f"{attack}/{threat} {json.dumps(used, sort_keys=True)}"
                row = chunked_row(attack, threat, overrides, results["sanity_partial"], key)
                results["sanity_rows"].append(row)
                update()
                return row

            checks = sanity_checks(classifier, defense, images, labels, dataset=dataset, settings=settings,
                                   eot_samples=eot_samples, seed=seed, progress=progress, measure=measure)
            results["sanity"] = {**checks, "settings": sanity_used,
                                 "seconds": round(sum(row["seconds"] for row in results["sanity_rows"]), 2)}
            update()
        return results


def _with_earlier(asked: list[str], earlier: list[str], kept: list[str]) -> list[str]:
    """The names asked for, and the earlier ones not asked for that still have rows (finished or in chunks) to keep,
    in the earlier order."""
    return [name for name in dict.fromkeys([*earlier, *kept, *asked])
            if name in asked or (name != "none" and name in kept)]


def _chunks_done(parts: list[dict] | None, n: int) -> str:
    """' (200 of 500 images done)' for a row with finished chunks, else ''."""
    return f" ({sum(part['n'] for part in parts)} of {n} images done)" if parts else ""


def _sanity_settings(dataset: str, settings: dict) -> dict:
    """What the sanity checks' results depend on beyond the run's identity: PGD's and FGSM's settings."""
    return {attack: attack_settings(attack, dataset, **settings.get(attack, {})) for attack in ("pgd", "fgsm")}


# What grows as an evaluation runs; everything else in the results is the run's identity.
PROGRESS_KEYS = ("attacks", "threats", "pending", "partial", "rows", "sanity", "sanity_rows", "sanity_partial",
                 "seconds")


def _check_same_run(stored: dict, results: dict, sources: list[str], out) -> None:
    """A ValueError naming the first difference when OUT's results come from another run's settings or checkpoints.

    Checkpoints compare by content (``checkpoint_difference``). Results of an
    older version recorded paths only: they are refused, saying how to vouch
    for them; and no label counts, which are then not compared (MNIST kept its
    order) or, for CIFAR-10, whose images were others, refused.
    """
    fix = "rerun with the same settings to resume it, or pass another --out"
    if results["dataset"] == "cifar10" and "label_counts" not in stored.get("subset", {}):
        raise ValueError(f"{out} holds a CIFAR-10 evaluation from before the test set was read class-interleaved: "
                         f"its images were others (the first 1,000 all airplanes); pass another --out")
    compared = [name for name in sources if name in stored]
    for name in compared:
        recorded = (stored.get("sha256") or {}).get(name)
        reason = checkpoint_difference(name, stored[name], recorded, results[name], results["sha256"][name])
        if reason and not recorded and results["sha256"][name]:
            raise ValueError(f"{out} holds an evaluation with {reason}; if it is, add "
                             f"{json.dumps({'sha256': results['sha256']})} to {out}/results.json to resume it, "
                             f"or pass another --out")
        if reason:
            raise ValueError(f"{out} holds an evaluation with {reason}; {fix}")
    skipped = [*PROGRESS_KEYS, *compared, "sha256"]
    before = _plain({k: v for k, v in stored.items() if k not in skipped})
    now = _plain({k: v for k, v in results.items() if k not in skipped})
    if "label_counts" not in before.get("subset", {}):
        now.get("subset", {}).pop("label_counts", None)
    if before != now:
        where, old, new = _difference(before, now)
        raise ValueError(f"{out} holds an evaluation with {where} {old!r}, but this one has {new!r}; {fix}")


def _difference(a, b, where: str = ""):
    """(path, a's value, b's value) of the first difference between two JSON values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    return where or "results", a, b


def _plain(value):
    """``value`` as it reads back from JSON (tuples as lists, keys as strings), to compare with stored results."""
    return json.loads(json.dumps(value))


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


def _classes(classifier: nn.Module, images: torch.Tensor) -> int:
    """The classifier's number of outputs, from one image."""
    with torch.no_grad():
        return classifier(images[:1].to(next(classifier.parameters()).device)).shape[1]
