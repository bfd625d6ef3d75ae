"""What each rank of ``torchrun --nproc-per-node 2 tests/distributed_evaluation_worker.py DATA_ROOT CHECKPOINTS OUT``
runs, and what tests/test_distributed.py runs again in one process to compare with: an evaluation of a tiny defense
through the library, whose scoring projection records every image it scores, then the CLI's ``evaluate`` (finishing
a run that one process began) and ``sweep``. Rank 0 saves the images each rank scored to OUT/scored.pt.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from torch import nn

from classifiers import build_classifier
from defense_hgan import cli
from defense_hgan.classifier_io import load_classifier, save_classifier
from defense_hgan.data import load_dataset
from defense_hgan.defense import gan_defense
from defense_hgan.distributed import session
from defense_hgan.evaluation import evaluate
from defense_hgan.generator_io import load_generator, save_generator
from defense_hgan.generators import build_generator

N, CHUNK = 10, 2  # five chunks: two rounds of a chunk on each of two ranks, then one on rank 0 alone
PGD = {"max_iter": 2, "eps_step": 0.1}  # PGD draws its random start from NumPy's global RNG, per ART batch
ATTACKS, THREATS = "fgsm,pgd", "oblivious,bpda"  # bpda: the attacker's projections draw restarts from torch's RNG


def checkpoints(folder: str | Path) -> dict[str, str]:
    """The tiny checkpoints ``save_checkpoints`` writes into ``folder``, as the CLI's flags name them."""
    return {name: str(Path(folder) / f"{name}.pt") for name in ("classifier", "generator")}


def save_checkpoints(folder: Path) -> dict[str, str]:
    """A tiny DCGAN generator and an untrained classifier of MNIST, seeded, saved as the CLI reads them."""
    torch.manual_seed(0)
    paths, options = checkpoints(folder), {"latent_dim": 8, "width": 4}
    save_generator(build_generator("dcgan", "mnist", **options), paths["generator"], "dcgan", "mnist", options)
    save_classifier(build_classifier("mnist", "d"), paths["classifier"],
                    {"dataset": "mnist", "arch": "d", "options": {}})
    return paths


class Recorded(nn.Module):
    """A defense's scoring projection that keeps, on this rank, each call's images and their projections."""

    def __init__(self, purify: nn.Module):
        super().__init__()
        self.purify, self.calls = purify, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.purify(x)
        self.calls.append((x.detach().cpu().clone(), projected.detach().cpu().clone()))
        return projected


def library_evaluation(folder, data_root, out: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``evaluation.evaluate`` of the tiny defense on the first N test images into OUT; the (images, projections)
    its scoring projection saw on this rank, one call per chunk of each row."""
    paths = checkpoints(folder)
    images, labels = load_dataset("mnist", train=False, root=data_root)
    defense = gan_defense(load_generator(paths["generator"], "cpu"), L=2, R=2, seed=0)
    recorded = Recorded(defense.purify)
    evaluate(load_classifier(paths["classifier"], "cpu"), dataclasses.replace(defense, purify=recorded), images[:N],
             labels[:N], dataset="mnist", attacks=ATTACKS, threats=THREATS, settings={"pgd": PGD}, chunk=CHUNK,
             progress=False, out=out)
    return recorded.calls


def command_line_evaluate(folder, data_root, out: Path, attacks: str = ATTACKS) -> None:
    """The CLI's evaluate of the tiny checkpoints into OUT/evaluate."""
    cli.evaluate(**checkpoints(folder), attacks=attacks, threat=THREATS, L=2, R=2, n=N, settings={"pgd": PGD},
                 chunk=CHUNK, out=str(out / "evaluate"), data_root=str(data_root), device="cpu")


def command_line_sweep(folder, data_root, out: Path) -> None:
    """The CLI's sweep of the tiny checkpoints (three cells, PGD under BPDA) into OUT/sweep."""
    cli.sweep(**checkpoints(folder), L="2,3,4", R="2", attack="pgd", threat="bpda", n=N, settings=PGD,
              out=str(out / "sweep"), data_root=str(data_root), device="cpu")


def main(data_root: str, folder: str, out: str) -> None:
    out = Path(out)
    with session("cpu") as world:
        scored = world.gather(library_evaluation(folder, data_root, out / "library"))
        command_line_evaluate(folder, data_root, out)
        command_line_sweep(folder, data_root, out)
    if world.is_main:
        torch.save(scored, out / "scored.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
