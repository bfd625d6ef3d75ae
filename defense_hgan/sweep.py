"""L/R sweeps: Defense-GAN's accuracy, projection error and cost over a grid of generators x L x R (HGAN Figure 5).

A cell is one (generator, L, R). Each cell scores the clean images and one
attack's adversarial images through the defense, and records the projection
MSE of the clean images and the seconds their projection took (the setting's
time cost). Under the ``oblivious`` threat the adversarial images do not depend
on the defense, so they are crafted once per sweep, against the bare
classifier, and every cell reuses them; under ``bpda`` / ``bpda-eot`` each cell
crafts its own against its defense (``evaluation.attack_row``).

Results go to ``OUT/sweep.csv``, one tidy row per cell (``COLUMNS``), rewritten
atomically after every cell. A rerun into the same folder reads that CSV and
skips the cells it already holds, so an interrupted sweep resumes where it
stopped (and a grid can be widened later); it refuses a CSV made with other run
settings (``RUN_COLUMNS``). Every cell is seeded on its own, so a resumed sweep
gives the rows an uninterrupted one would, bar the seconds.
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from defense_hgan.atomic import atomic_write

CSV_NAME = "sweep.csv"
# The settings every row of one CSV shares; a rerun with others is refused.
RUN_COLUMNS = ("dataset", "classifier", "n", "attack", "threat", "seed", "attack_settings", "projection_options")
RESULT_COLUMNS = (
    "accuracy_clean_undefended", "accuracy_clean_defended",  # the clean images, bare and through the defense
    "accuracy_attacked_undefended", "accuracy_attacked_defended",  # the adversarial images, likewise
    "projection_mse", "projection_seconds",  # of the cell's projection of the clean images
    "seconds",  # the whole cell
)
COLUMNS = ("generator", "generator_model", "L", "R", *RUN_COLUMNS, *RESULT_COLUMNS)
_INTS = {"L", "R", "n", "seed"}


class SweepGenerator(NamedTuple):
    """A generator as a sweep names it: ``path`` keys its cells in the CSV, ``model`` labels its lines."""

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
              progress: bool = True, **projection_options) -> list[dict]:
    """Sweep every (generator, L, R) not yet in ``OUT/sweep.csv``; return all the CSV's rows.

    ``L`` and ``R`` are grids as ``parse_grid`` reads them; ``settings`` are
    ART overrides for the attack; ``projection_options`` go to ``project``.
    """
    from tqdm.auto import tqdm

    from attacks import ATTACKS, attack_settings
    from defense_hgan.evaluation import THREATS, accuracy, check_names

    attack = check_names([attack], ATTACKS, "attack")[0]
    threat = check_names([threat], THREATS, "threat model")[0]
    used = attack_settings(attack, dataset, **(settings or {}))
    if threat == "bpda-eot":
        used["eot_samples"] = eot_samples
    run = {"dataset": dataset, "classifier": str(classifier_name), "n": len(labels), "attack": attack, "threat": threat,
           "seed": seed, "attack_settings": json.dumps(used, sort_keys=True),
           "projection_options": json.dumps(projection_options, sort_keys=True)}
    path = Path(out) / CSV_NAME
    rows = _previous_rows(path, run)
    done = {(row["generator"], row["L"], row["R"]) for row in rows}
    todo = [(generator, l, r) for generator in generators for l in parse_grid(L, "L") for r in parse_grid(R, "R")
            if (generator.path, l, r) not in done]
    if not todo:
        return rows
    classifier.eval()
    device = next(classifier.parameters()).device
    images, labels = images.to(device), labels.to(device)
    clean = accuracy(classifier, images, labels)
    crafted = _oblivious(classifier, images, labels, attack, dataset, settings, seed, progress) \
        if threat == "oblivious" else None
    cell_options = {"attack": attack, "threat": threat, "dataset": dataset, "settings": settings,
                    "eot_samples": eot_samples, "seed": seed, **projection_options}
    for generator, l, r in tqdm(todo, desc="sweep", unit="cell", disable=not progress):
        rows.append({"generator": generator.path, "generator_model": generator.model, "L": l, "R": r, **run,
                     **_cell(classifier, generator.module, l, r, images, labels, clean, crafted, **cell_options)})
        _write(path, rows)
    return rows


def _cell(classifier, generator, L, R, images, labels, clean, crafted, *, attack, threat, dataset, settings,
          eot_samples, seed, **options) -> dict:
    """One cell's results: the clean images projected (timed), then the attacked ones scored."""
    from defense_hgan.evaluation import accuracy, attack_row, gan_defense
    from defense_hgan.projection import project

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
    from defense_hgan.devices import seed_everything
    from defense_hgan.evaluation import accuracy, craft

    seed_everything(seed)  # as attack_row does, so the images match an evaluation's
    adversarial = craft(classifier, None, images, labels, attack=attack, threat="oblivious", dataset=dataset,
                        settings=settings, progress=progress)
    return adversarial, accuracy(classifier, adversarial, labels)


def read_sweep(path: str | os.PathLike) -> list[dict]:
    """A sweep CSV's rows, numbers as int / float; a ValueError for a file that is not one."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} is not a sweep CSV of this version: its columns are {reader.fieldnames}, "
                             f"expected {list(COLUMNS)}")
        rows = list(reader)
    for row in rows:
        for name in _INTS:
            row[name] = int(row[name])
        for name in RESULT_COLUMNS:
            row[name] = float(row[name])
    return rows


def _previous_rows(path: Path, run: dict) -> list[dict]:
    """The rows of an earlier sweep into the same folder, or a ValueError when its run settings differ."""
    if not path.exists():
        return []
    rows = read_sweep(path)
    for row in rows:
        for name in RUN_COLUMNS:
            if row[name] != run[name]:
                raise ValueError(f"{path} holds a sweep with {name} {row[name]!r}, but this one has {run[name]!r}; "
                                 f"rerun with the same settings to resume it, or pass another --out")
    return rows


def _write(path: Path, rows: list[dict]) -> None:
    """Write the CSV atomically (temp file + rename): an interruption leaves the previous complete file."""
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
