"""Levers besides training: how one generator's defense moves with the projection's options and the classifier.

On the first --n test images, each variant reports the bare and defended
accuracy of its classifier on the clean images and on oblivious FGSM images
(crafted against that classifier, bare), and the projection MSE of both.

  paper      Defense-GAN's projection (L=200, R=10, seed 0) in front of --classifier
  prior=W    the same with ``prior_weight=W``: W * ||z||^2 / latent_dim joins each latent's loss
  L=K        K projection steps instead of 200
  tol=T      the same with ``tolerance=T``: each pixel may differ by up to T at no cost (T = the attack's
             eps tells the projection the threat model: x + delta then fits no worse than its clean digit)
  rec=N      Defense-GAN-Rec, cheaply: --classifier fine-tuned for 2 epochs (Adam 3e-4) on N random
             training images and their reconstructions by a short projection (L=50, R=2;
             defense_hgan.reconstruction_tuning), then the paper's projection in front of it

    python benchmarks/defense_levers.py ~/dh-runs/mnist/dcgan/snapshots/step_006000.pt \\
        --classifier zoo/mnist-a/classifier.pt --data-root data --n 50 --variants paper,prior=0.03,rec=2000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from defense_hgan import load_classifier, load_dataset, load_generator, project
from defense_hgan.checkpoints import file_sha256
from attacks.threats import craft
from defense_hgan.defense import accuracy
from defense_hgan.reconstruction_tuning import tune_on_reconstructions
from measure import machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results"
PAPER = {"L": 200, "R": 10, "seed": 0}
VARIANTS = ("paper", "prior", "L", "tol", "rec")


def variant_row(name: str, generator, classifier, images, labels, args) -> list:
    start = time.perf_counter()
    kind, _, value = name.partition("=")
    options = dict(PAPER)
    if kind == "prior":
        options["prior_weight"] = float(value)
    elif kind == "L":
        options["L"] = int(value)
    elif kind == "tol":
        options["tolerance"] = float(value)
    elif kind == "rec":
        train = load_dataset(args.dataset, train=True, root=args.data_root)
        classifier, _ = tune_on_reconstructions(classifier, generator, train, (images, labels), int(value),
                                                device="cpu")
    adversarial = craft(classifier, None, images, labels, attack="fgsm", threat="oblivious", dataset=args.dataset)
    row = [name, f"{accuracy(classifier, images, labels):.2f}", f"{accuracy(classifier, adversarial, labels):.2f}"]
    for batch in (images, adversarial):
        result = project(generator, batch, **options)
        row += [f"{accuracy(classifier, result.images, labels):.2f}", f"{result.error.mean():.4f}"]
    return row + [f"{time.perf_counter() - start:.0f}"]


def run(args) -> str:
    generator = load_generator(args.generator, "cpu")
    classifier = load_classifier(args.classifier, "cpu")
    images, labels = load_dataset(args.dataset, train=False, root=args.data_root)
    images, labels = images[: args.n], labels[: args.n]
    names = args.variants.split(",")
    unknown = [name for name in names if name.partition("=")[0] not in VARIANTS]
    if unknown:  # before any work: a typo must not cost the variants before it
        raise SystemExit(f"unknown variants {unknown}; expected paper, prior=W, L=K, tol=T or rec=N")
    rows = []
    for name in names:
        rows.append(variant_row(name, generator, classifier, images, labels, args))
        print(rows[-1], flush=True)
    return "\n".join([
        "# Defense levers on one generator\n",
        f"Machine: {machine(torch.device('cpu'))}; torch {torch.__version__}. Generator `{args.generator}` "
        f"(sha256 {file_sha256(args.generator)[:12]}), classifier `{args.classifier}`, the first {args.n} "
        f"{args.dataset} test images; FGSM is the attacks package's default, crafted against each row's "
        "classifier (oblivious). Made by `benchmarks/defense_levers.py` (its docstring defines the variants).\n",
        *markdown_table(["variant", "bare clean", "bare FGSM", "defended clean", "projection MSE clean",
                         "defended FGSM", "projection MSE FGSM", "seconds"], rows),
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--variants", default="paper,prior=0.03,rec=2000")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
