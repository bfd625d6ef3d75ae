"""How much could a perfect generator defend? Oblivious attacks projected onto the training set itself.

Defense-GAN's projection returns the image of the generator's range nearest
(in L2) to its input. Its ideal limit on MNIST is a generator whose range is
the real digits. This stands in the 60,000 training images for that range:
each image (clean, and each attack crafted once with ART against the bare
classifier, as in the oblivious rows) is replaced by its nearest training
image, and reported are the classifier's accuracy on that neighbour and the
neighbour's own label's. A second, more favourable range adds the clean
test image itself to the training images (a generator that can draw x
exactly): its projection is correct when x, or a training image of x's
class, is the nearest. Neither range is a bound on a real generator, whose
continuous range can draw images between digits, nearer to both the clean
and the attacked image; they show how often an attack moves the nearest
real digit to another class.

    python benchmarks/ideal_projection.py --classifier zoo/mnist-a/classifier.pt --data-root data --n 500
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attacks.threats import craft
from defense_hgan import load_classifier, load_dataset
from defense_hgan.devices import seed_everything
from defense_hgan.scoring import proportion_text
from measure import machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "ideal_projection_mnist.md"


def nearest(queries: torch.Tensor, references: torch.Tensor, chunk: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each query's nearest reference image in L2, and the per-pixel MSE to it."""
    flat = references.flatten(1)
    indices, errors = [], []
    for start in tqdm(range(0, len(queries), chunk), desc="nearest training image", leave=False):
        distances = torch.cdist(queries[start:start + chunk].flatten(1), flat).square() / flat.shape[1]
        error, index = distances.min(1)
        indices.append(index)
        errors.append(error)
    return torch.cat(indices), torch.cat(errors)


def cell(hits: torch.Tensor) -> str:
    return proportion_text(int(hits.sum()), len(hits))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--n", type=int, default=500, help="the first n test images")
    parser.add_argument("--attacks", default="fgsm,pgd", help="oblivious attacks, the attacks package's defaults")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seed_everything(0)  # ART draws PGD's random start from numpy
    classifier = load_classifier(args.classifier)
    train_images, train_labels = load_dataset(args.dataset, train=True, root=args.data_root)
    test_images, test_labels = load_dataset(args.dataset, train=False, root=args.data_root)
    images, labels = test_images[: args.n], test_labels[: args.n]
    sets = {"none": images}
    for attack in args.attacks.split(","):
        sets[attack] = craft(classifier, None, images, labels, attack=attack, threat="oblivious", dataset=args.dataset)
    rows = []
    for name, batch in sets.items():
        with torch.no_grad():
            bare = classifier(batch).argmax(1)
            index, error = nearest(batch, train_images)
            on_neighbour = classifier(train_images[index]).argmax(1)
        with_x = torch.where((batch - images).flatten(1).square().mean(1) <= error, labels, train_labels[index])
        fooled = bare != labels
        to_attack = (on_neighbour[fooled] == bare[fooled]).float().mean() if name != "none" and fooled.any() else None
        rows.append([name, cell(bare == labels), cell(on_neighbour == labels), cell(train_labels[index] == labels),
                     f"{error.mean():.4f}", cell(with_x == labels), "-" if to_attack is None else f"{to_attack:.3f} (of {int(fooled.sum())})"])
        print(rows[-1], flush=True)
    command = shlex.join(["python", "benchmarks/ideal_projection.py", *(sys.argv[1:] if argv is None else argv)])
    report = "\n".join([
        "# Oblivious attacks projected onto the training set: a perfect generator's limit\n",
        f"Machine: {machine(torch.device('cpu'))}; torch {torch.__version__}. Classifier `{args.classifier}`; the "
        f"first {args.n} {args.dataset} test images; each attack crafted once against the bare classifier with the "
        "attacks package's defaults (eps 0.3); every image replaced by its nearest (L2) of the "
        f"{len(train_labels)} training images. 95% Wilson intervals. Made by `{command}`.\n",
        *markdown_table(["attack", "bare classifier", "classifier on the nearest training image",
                         "the nearest training image's label", "MSE to it",
                         "nearest of training images + the clean image: its label",
                         "classifier on it = the attack's label (images the attack fools)"], rows),
    ])
    write_report(report, args.out)


if __name__ == "__main__":
    main()
