"""Attack evaluation: every attack under every threat model, row by row, resumable.

The pieces live where they belong: the defense (``Defense``, ``gan_defense``)
in ``defense``, threat models and attacks in the ``attacks`` package, one row's
crafting and scoring in ``scoring``, the results files and their resumption in
``report.ResultsStore``, the sanity checks in ``sanity``. ``evaluate`` is the
loop over rows that ties them together.

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

Under torchrun (``distributed.session``) the ranks share out the chunks, a
round of one chunk per rank at a time (``World.map``), and every rank's
chunks merge into the results a single process writes, number for number:
a chunk reseeds from the run's seed, so it computes the same whichever rank
runs it and whatever ran before. Rank 0 alone locks OUT and writes the
files; a single process's unfinished results resume under N ranks and back.
The seconds add up each chunk's time on its rank. The unit shared out is the
chunk, not the image, because an image's randomness depends on the batch it
is in: ART draws PGD's and APGD's random starts for a whole batch from
NumPy's global RNG, Square one square per iteration for all the images it
attacks, the attacker's projections their restarts from torch's. An image's
randomness is therefore a function of the seed, its chunk and its place in
the chunk, never of the rank; pass ``chunk`` at most n / ranks to keep every
rank busy (chunk is part of the run's identity, so change it only in a new OUT).
"""
from __future__ import annotations

import contextlib
import json
import os
from functools import partial

import torch
from torch import nn

from attacks import ATTACKS
from attacks.threats import (THREATS, ExpectedDefended, check_names, check_threat, craft, make_attack,
                             threat_estimator)
from defense_hgan.adversarial_cache import AdversarialCache
from defense_hgan.checkpoints import check_trained_on, file_sha256
from defense_hgan.defense import Defense, accuracy, correct, gan_defense, positive_int
from defense_hgan.distributed import World, is_main_process, session
from defense_hgan.locking import output_lock
from defense_hgan.report import ResultsStore, plain
from defense_hgan.sanity import sanity_checks, sanity_settings
from defense_hgan.scoring import attack_row, merge_rows, row_settings, wilson_interval

# Kept importable from here, where earlier versions defined them.
__all__ = ["ATTACKS", "THREATS", "SUBSET", "Defense", "ExpectedDefended", "accuracy", "attack_row", "check_names",
           "correct", "craft", "evaluate", "gan_defense", "make_attack", "merge_rows", "row_settings",
           "threat_estimator", "wilson_interval"]
SUBSET = "the first n images of the test set"


def evaluate(classifier: nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
             dataset: str, attacks=("fgsm", "pgd", "cw"), threats=("oblivious", "bpda"),
             settings: dict | None = None, eot_samples: int = 5, seed: int = 0, test_set_size: int | None = None,
             sanity: bool = False, chunk: int = 100, progress: bool = True, out: str | os.PathLike | None = None,
             sources: dict | None = None, test_set_labels: torch.Tensor | None = None,
             adversarial_cache: str | os.PathLike | None = None) -> dict:
    """Every attack under every threat model, plus the no-attack row; as ``report.write_results`` writes them.

    ``attacks`` are of ``attacks.ATTACKS`` (by default the papers' three);
    ``settings`` maps attack names to ART overrides; ``sanity`` adds
    ``defense_hgan.sanity.sanity_checks`` (under BPDA) as ``results["sanity"]``.
    ``sources`` names the checkpoints evaluated (e.g. ``{"classifier": path,
    "generator": path}``); it heads the results, with the sha256 of each file
    under ``results["sha256"]``. ``chunk`` images are attacked and scored at a
    time (and saved, with ``out``). The subset's label counts are recorded, and
    a subset far from the class balance of ``test_set_labels`` (the whole test
    set's labels, when given) is warned about. A classifier and a defense's
    generator trained on another dataset than ``dataset`` are refused.
    With ``adversarial_cache`` (a folder), the oblivious rows' adversarial
    images (all but AutoAttack's, which its defense judges) are kept there,
    chunk by chunk, and read back by any evaluation of the same classifier,
    images, attack, settings and seed, whatever its defense
    (``adversarial_cache.AdversarialCache``); a row so made records its
    ``cached_images``.

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

    attacks = check_names(attacks, ATTACKS, "attack")
    threats = check_names(threats, THREATS, "threat model")
    for threat in threats:
        check_threat(threat, defense)
    settings = settings or {}
    if settings:
        check_names(list(settings), ATTACKS, "attack in settings")
    check_trained_on(dataset, classifier=classifier, generator=defense.generator)
    if test_set_labels is not None and is_main_process():
        warn_if_unbalanced(labels, test_set_labels, f"the subset evaluated (the first {len(labels)} test images)")
    sources = {name: str(path) for name, path in (sources or {}).items()}
    identity = {
        **sources,
        "sha256": {name: file_sha256(path) for name, path in sources.items()},
        "dataset": dataset,
        "subset": {"n": len(labels), "of": test_set_size, "selection": SUBSET,
                   "label_counts": label_counts(labels, dataset_info(dataset).num_classes)},
        "seed": seed,
        "confidence_level": 0.95,
        "defense": defense.description,
        "eot_samples": eot_samples,
        "chunk": positive_int(chunk, "chunk"),
    }

    def expected(attack: str, threat: str, overrides: dict | None) -> dict:
        """The settings a row of ``attack`` with these ART overrides records in this run."""
        return row_settings(attack, threat, dataset, overrides, eot_samples, defense)

    sanity_used = sanity_settings(dataset, settings)

    def opened() -> ResultsStore:
        """OUT's results of this run (or a refusal), planned."""
        store = ResultsStore(identity, out, tuple(sources))
        store.check_rows(lambda attack, threat: expected(attack, threat, settings.get(attack)))
        store.check_sanity(sanity_used)
        store.plan(attacks, threats, sanity)
        return store

    with session(next(classifier.parameters()).device.type) as world, contextlib.ExitStack() as held:
        if out is not None:
            world.share(lambda: held.enter_context(output_lock(out)))
        store = world.share(opened)  # rank 0 reads OUT; a refusal stops every rank
        if not world.is_main:
            store.out = None  # every rank holds the same results as they grow; rank 0 alone writes them
        todo, progress = store.todo, progress and world.is_main
        if store.resumed and progress:
            print(f"{out}: resuming, {len(store.done)} rows there, {len(todo)} to run"
                  + (", then the sanity checks" if sanity and store.results["sanity"] is None else ""))
        classifier.eval()
        cache = None if adversarial_cache is None else AdversarialCache(adversarial_cache)
        row_of = partial(attack_row, classifier, defense, dataset=dataset, eot_samples=eot_samples, seed=seed,
                         progress=progress, cache=cache)
        in_chunks = partial(_in_chunks, store, world, images, labels, chunk)
        bar = tqdm(total=store.chunks_left(len(range(0, len(labels), chunk))), desc="evaluate", unit="chunk",
                   disable=not progress)
        for attack, threat in todo:
            in_chunks(f"{attack}/{threat}", partial(row_of, attack=attack, threat=threat,
                                                    settings=settings.get(attack)), after_chunk=bar.update)
        bar.close()
        if sanity:
            def measure(attack: str, threat: str, overrides: dict) -> dict:
                """A row of the evaluation or of earlier sanity checks with these settings, else a new, saved one."""
                used = plain(expected(attack, threat, overrides))
                key = f"{attack}/{threat} {json.dumps(used, sort_keys=True)}"
                return store.find(attack, threat, used) or in_chunks(
                    key, partial(row_of, attack=attack, threat=threat, settings=overrides), sanity=True)

            checks = sanity_checks(classifier, defense, images, labels, dataset=dataset, settings=settings,
                                   eot_samples=eot_samples, seed=seed, progress=progress, measure=measure)
            store.set_sanity(checks, sanity_used)
        return store.results


def _in_chunks(store: ResultsStore, world: World, images: torch.Tensor, labels: torch.Tensor, chunk: int, key: str,
               row_of, sanity: bool = False, after_chunk=lambda: None) -> dict:
    """The row ``row_of(images, labels)`` on all images, measured a chunk at a time from where ``store`` has
    ``key``'s finished chunks (under N ranks, N chunks at a time), each saved in order; once done, recorded as
    finished and returned."""
    starts = range(len(store.parts(key, sanity)) * chunk, len(labels), chunk)
    for part in world.map(lambda start: row_of(images[start : start + chunk], labels[start : start + chunk]), starts):
        store.add_part(key, part, sanity)
        after_chunk()
    return store.finish(key, merge_rows(store.parts(key, sanity)), sanity)
