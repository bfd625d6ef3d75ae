"""L/R sweeps: Defense-GAN's accuracy, projection error and cost over a grid of generators x L x R (HGAN Figure 5).

A cell is one (generator, L, R). Each cell scores the clean images and one
attack's adversarial images through the defense, and records the projection
MSE of the clean images and the seconds their projection took (the setting's
time cost). Under the ``oblivious`` threat the adversarial images do not depend
on the defense, so they are crafted once per sweep, against the bare
classifier, and every cell reuses them; under ``bpda`` / ``bpda-eot`` each cell
crafts its own against its defense (``scoring.attack_row``).

Results go to ``OUT/sweep.csv``, one tidy row per cell (``COLUMNS``), rewritten
atomically after every cell; OUT is locked for the run (``locking.output_lock``).
A rerun into the same folder reads that CSV and skips the cells it already
holds, so an interrupted sweep resumes where it stopped (and a grid can be
widened later); it refuses a CSV made with other run settings
(``RUN_COLUMNS``). Checkpoints are identified by the sha256 of their bytes, so
``./zoo/x.pt`` resumes the cells of ``zoo/x.pt`` and a file replaced at the
same path is refused (``checkpoints.checkpoint_difference``; a CSV of an older
version, which recorded paths only, is refused for the files it names). Every
cell is seeded on its own, so a resumed sweep gives the rows an uninterrupted
one would, bar the seconds.

Under torchrun (``distributed.session``) the ranks share out the cells, a
round of one cell per rank at a time (``World.map``), and rank 0 alone locks
OUT and writes the CSV, whose rows are then a single process's, in its order
and number for number (bar the seconds, measured on ranks that ran side by
side). The cell, not the image, is what ranks share out: a cell projects all
its images in one call, whose restarts are drawn for the whole batch, and
crafts its BPDA images in ART's batches, whose random starts are too
(``evaluation`` says more), so only whole cells reproduce a single process's
numbers. Under ``oblivious`` every rank crafts the same adversarial images
first. A round lasts as long as its dearest cell, and a grid of fewer cells
than ranks leaves ranks idle.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from defense_hgan.checkpoints import check_trained_on, checkpoint_difference, file_sha256, same_file
from defense_hgan.distributed import is_main_process, session
from defense_hgan.locking import output_lock
from defense_hgan.report import read_table, write_table

CSV_NAME = "sweep.csv"
# The settings every row of one CSV shares; a rerun with others is refused (the classifier: by content).
RUN_COLUMNS = ("dataset", "classifier", "n", "attack", "threat", "seed", "attack_settings", "projection_options")
RESULT_COLUMNS = (
    "accuracy_clean_undefended", "accuracy_clean_defended",  # the clean images, bare and through the defense
    "accuracy_attacked_undefended", "accuracy_attacked_defended",  # the adversarial images, likewise
    "projection_mse", "projection_seconds",  # of the cell's projection of the clean images
    "seconds",  # the whole cell
)
# The checkpoints' sha256 ("" for a name that is no file) and the images' label counts (a JSON list). A CSV of
# an older version lacks these columns; it reads with them empty.
CONTENT_COLUMNS = ("generator_sha256", "classifier_sha256", "label_counts")
COLUMNS = ("generator", "generator_model", "L", "R", *RUN_COLUMNS, *RESULT_COLUMNS, *CONTENT_COLUMNS)
_INTS = {"L", "R", "n", "seed"}
_FIX = "rerun with the same settings to resume it, or pass another --out"


class SweepGenerator(NamedTuple):
    """A generator as a sweep names it: ``path`` (and the sha256 of the file it names) keys its cells in the CSV,
    ``model`` labels its lines."""

    path: str
    model: str
    module: nn.Module


def generator_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "auto") -> SweepGenerator:
    """A sweep's generator from a checkpoint (train-generator's OUT/generator.pt)."""
    from defense_hgan.checkpoints import load_checkpoint
    from defense_hgan.generator_io import KIND, load_generator

    return SweepGenerator(str(path), str(load_checkpoint(path, KIND)["config"]["model"]), load_generator(path, device))


def parse_grid(values, name: str) -> list[int]:
    """Positive integers from an int, "10,25,50" or a sequence of either, in order, without repeats."""
    items = values if isinstance(values, (list, tuple)) else [values]
    parts = [part for item in items for part in (item.split(",") if isinstance(item, str) else [item])]
    grid = [int(part) if type(part) is int or str(part).strip().isdigit() else 0 for part in parts]
    if not grid or min(grid) < 1:
        raise ValueError(f"--{name} must be positive integers such as 10,25,50, got {values!r}")
    return list(dict.fromkeys(grid))


def run_sweep(classifier: nn.Module, generators: list[SweepGenerator], images: torch.Tensor, labels: torch.Tensor, *,
              L, R, dataset: str, classifier_name: str, out: str | os.PathLike, attack: str = "fgsm",
              threat: str = "oblivious", settings: dict | None = None, eot_samples: int = 5, seed: int = 0,
              progress: bool = True, test_set_labels: torch.Tensor | None = None, **projection_options) -> list[dict]:
    """Sweep every (generator, L, R) not yet in ``OUT/sweep.csv``; return all the CSV's rows.

    ``L`` and ``R`` are grids as ``parse_grid`` reads them; ``settings`` are
    ART overrides for the attack; ``projection_options`` go to ``project``.
    ``classifier_name`` is the classifier's checkpoint path (identified by its
    file's sha256) or a name. A subset far from the class balance of
    ``test_set_labels`` (the whole test set's labels, when given) is warned about.
    """
    from tqdm.auto import tqdm

    from attacks import ATTACKS, attack_settings
    from attacks.threats import THREATS, check_names
    from defense_hgan.data import dataset_info, label_counts, warn_if_unbalanced
    from defense_hgan.defense import accuracy

    attack = check_names([attack], ATTACKS, "attack")[0]
    threat = check_names([threat], THREATS, "threat model")[0]
    check_trained_on(dataset, classifier=classifier)
    for generator in generators:
        check_trained_on(dataset, generator=generator.module)
    if test_set_labels is not None and is_main_process():
        warn_if_unbalanced(labels, test_set_labels, f"the subset swept (the first {len(labels)} test images)")
    used = attack_settings(attack, dataset, **(settings or {}))
    if threat == "bpda-eot":
        used["eot_samples"] = eot_samples
    run = {"dataset": dataset, "classifier": str(classifier_name), "n": len(labels), "attack": attack, "threat": threat,
           "seed": seed, "attack_settings": json.dumps(used, sort_keys=True),
           "projection_options": json.dumps(projection_options, sort_keys=True),
           "classifier_sha256": file_sha256(classifier_name) or "",
           "label_counts": json.dumps(label_counts(labels, dataset_info(dataset).num_classes))}
    path, device = Path(out) / CSV_NAME, next(classifier.parameters()).device
    with session(device.type) as world, ExitStack() as held:
        world.share(lambda: held.enter_context(output_lock(out)))
        rows, todo = world.share(lambda: _plan(path, run, generators, parse_grid(L, "L"), parse_grid(R, "R")))
        if not todo:
            return rows
        progress = progress and world.is_main
        classifier.eval()
        images, labels = images.to(device), labels.to(device)
        clean = accuracy(classifier, images, labels)
        crafted = _oblivious(classifier, images, labels, attack, dataset, settings, seed, progress) \
            if threat == "oblivious" else None  # every rank crafts the same images: seeded, on the same inputs
        cell_options = {"attack": attack, "threat": threat, "dataset": dataset, "settings": settings,
                        "eot_samples": eot_samples, "seed": seed, **projection_options}

        def cell(todo_item: tuple) -> dict:
            index, name, sha256, l, r = todo_item
            generator = generators[index]
            return {"generator": name, "generator_model": generator.model, "L": l, "R": r, **run,
                    "generator_sha256": sha256,
                    **_cell(classifier, generator.module, l, r, images, labels, clean, crafted, **cell_options)}

        for row in tqdm(world.map(cell, todo), total=len(todo), desc="sweep", unit="cell", disable=not progress):
            rows.append(row)
            if world.is_main:
                write_table(path, COLUMNS, rows)
    return rows


def _plan(path: Path, run: dict, generators: list[SweepGenerator], L: list[int], R: list[int]) -> tuple[list, list]:
    """The CSV's rows of an earlier sweep of these settings (or a ValueError for other settings or a replaced
    checkpoint), and the cells still to run as (generator's index, name, sha256, L, R)."""
    rows = _previous_rows(path, run)
    done = {(_key(row["generator"], row["generator_sha256"]), row["L"], row["R"]) for row in rows}
    todo = []
    for index, generator in enumerate(generators):
        sha256 = file_sha256(generator.path) or ""
        name = _stored_name(path, rows, generator.path, sha256)
        todo += [(index, name, sha256, l, r) for l in L for r in R if (_key(name, sha256), l, r) not in done]
    return rows, todo


def _key(name: str, sha256: str) -> str:
    """What identifies a generator's cells: its file's sha256, else (a name, no file) its path however spelled."""
    return sha256 or str(Path(name).resolve())


def _stored_name(path: Path, rows: list[dict], name: str, sha256: str) -> str:
    """The name the CSV already gives this generator (the first spelling stays), else ``name``; a ValueError
    for a file replaced since the CSV's rows of its path were made (or one this run cannot check against them)."""
    for row in rows:
        reason = checkpoint_difference("generator", row["generator"], row["generator_sha256"] or None, name,
                                       sha256 or None)
        if reason is None:
            return row["generator"]
        if same_file(row["generator"], name):
            raise ValueError(f"{path} holds a sweep with {reason}; {_FIX}")
    return name


def _cell(classifier, generator, L, R, images, labels, clean, crafted, *, attack, threat, dataset, settings,
          eot_samples, seed, **options) -> dict:
    """One cell's results: the clean images projected (timed), then the attacked ones scored."""
    from defense_hgan.defense import accuracy, gan_defense
    from defense_hgan.projection import project
    from defense_hgan.scoring import attack_row

    start = time.perf_counter()
    projection = project(generator, images, L, R, seed=seed, **options)  # what the defense's purify computes
    if images.is_cuda:
        torch.cuda.synchronize(images.device)  # CUDA runs asynchronously: time the finished projection
    projection_seconds = time.perf_counter() - start
    defense = gan_defense(generator, L, R, seed=seed, **options)
    if crafted is None:  # bpda, bpda-eot: adversarial images of this defense
        row = attack_row(classifier, defense, images, labels, attack=attack, threat=threat, dataset=dataset,
                         settings=settings, eot_samples=eot_samples, seed=seed)
        attacked = (row["accuracy_undefended"], row["accuracy_defended"])
    else:
        adversarial, undefended = crafted
        attacked = (undefended, accuracy(classifier, adversarial, labels, defense.purify))
    return {
        "accuracy_clean_undefended": clean,
        "accuracy_clean_defended": accuracy(classifier, projection.images, labels),
        "accuracy_attacked_undefended": attacked[0],
        "accuracy_attacked_defended": attacked[1],
        "projection_mse": projection.error.mean().item(),
        "projection_seconds": round(projection_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _oblivious(classifier, images, labels, attack, dataset, settings, seed, progress) -> tuple[torch.Tensor, float]:
    """The oblivious attack's adversarial images (crafted against the bare classifier) and its bare accuracy."""
    from attacks.threats import craft
    from defense_hgan.defense import accuracy
    from defense_hgan.devices import seed_everything

    seed_everything(seed)  # as attack_row does, so the images match an evaluation's
    adversarial = craft(classifier, None, images, labels, attack=attack, threat="oblivious", dataset=dataset,
                        settings=settings, progress=progress)
    return adversarial, accuracy(classifier, adversarial, labels)


def read_sweep(path: str | os.PathLike) -> list[dict]:
    """A sweep CSV's rows, numbers as int / float; a ValueError for a file that is not one.

    A CSV of an older version (without ``CONTENT_COLUMNS``) reads with those columns empty.
    """
    rows = read_table(path, COLUMNS, older=COLUMNS[:-len(CONTENT_COLUMNS)], what="sweep CSV")
    for row in rows:
        for name in _INTS:
            row[name] = int(row[name])
        for name in RESULT_COLUMNS:
            row[name] = float(row[name])
    return rows


def _previous_rows(path: Path, run: dict) -> list[dict]:
    """The rows of an earlier sweep into the same folder, or a ValueError when its run settings differ.

    The classifier compares by content (``checkpoint_difference``); label counts only where recorded.
    """
    if not path.exists():
        return []
    rows = read_sweep(path)
    for row in rows:
        differing = [name for name in RUN_COLUMNS if name != "classifier" and row[name] != run[name]]
        if row["label_counts"] and row["label_counts"] != run["label_counts"]:
            differing.append("label_counts")
        reason = checkpoint_difference("classifier", row["classifier"], row["classifier_sha256"] or None,
                                       run["classifier"], run["classifier_sha256"] or None)
        if reason is None and differing:
            reason = f"{differing[0]} {row[differing[0]]!r}, but this one has {run[differing[0]]!r}"
        if reason:
            raise ValueError(f"{path} holds a sweep with {reason}; {_FIX}")
    return rows
