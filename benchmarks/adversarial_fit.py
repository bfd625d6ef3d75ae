"""Does a longer projection reproduce the attack? FGSM images projected at several L, per generator.

The MNIST sweep shows defended FGSM accuracy falling as L grows. This measures
why: for the oblivious FGSM images of the first N test images (the sweep's),
project at each L (R fixed) and report the reconstruction's MSE to the
adversarial input (what the projection minimises) and to the clean image, the
defended accuracy, and how often the defended prediction is the label the
attack pushed the bare classifier to (on images the attack fooled). If the
projection carries the perturbation through, the last number rises with L.

    cd benchmarks && python adversarial_fit.py --classifier ../zoo/mnist-a/classifier.pt --data-root ../data \\
        ../zoo/mnist-wgan-gp/generator.pt ../zoo/mnist-hgan/generator.pt

``--grid PNG`` also draws, for the last generator and L, each image the
defense gets wrong as a row: clean image, adversarial image, projection; so a
reader can see whether the projection is the true digit misread by the
classifier or another digit drawn from the attack's strokes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from defense_hgan import load_classifier, load_dataset, project
from attacks.threats import craft
from defense_hgan.sweep import generator_from_checkpoint, parse_grid
from measure import generator_parser, machine, markdown_table, timed, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def predictions(classifier: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return classifier(images).argmax(1)


def run(args) -> str:
    device = torch.device(args.device)
    classifier = load_classifier(args.classifier, device)
    images, labels = load_dataset(args.dataset, train=False, root=args.data_root)
    images, labels = images[: args.n].to(device), labels[: args.n].to(device)
    adversarial = craft(classifier, None, images, labels, attack=args.attack, threat="oblivious", dataset=args.dataset)
    fooled_to = predictions(classifier, adversarial)
    fooled = fooled_to != labels
    rows = []
    for path in args.generators:
        _, model, generator = generator_from_checkpoint(path, device)
        for L in args.L:
            result, seconds = timed(lambda: project(generator, adversarial, L=L, R=args.R, seed=args.seed), device)
            defended = predictions(classifier, result.images)
            to_clean = ((result.images - images) ** 2).flatten(1).mean(1)
            rows.append([model, L, args.R, f"{result.error.mean():.4f}", f"{to_clean.mean():.4f}",
                         f"{(defended == labels).float().mean():.3f}",
                         f"{(defended[fooled] == fooled_to[fooled]).float().mean():.3f}", f"{seconds:.0f}"])
            print(rows[-1], flush=True)
    grid = [] if args.grid is None else wrong_grid(args.grid, images, adversarial, result.images, labels,
                                                    fooled_to, defended)
    return "\n".join([
        f"# Projections of {args.attack.upper()} images: how much of the attack comes through\n",
        f"Machine: {machine(device)}; torch {torch.__version__}. Classifier `{args.classifier}`; the first {args.n} "
        f"{args.dataset} test images, {args.attack} (the attacks package's defaults) against the bare classifier, "
        f"which it fools on {int(fooled.sum())} of them; projection with Defense-GAN's optimiser, seed {args.seed}. "
        "Made by `benchmarks/adversarial_fit.py`.\n",
        *markdown_table(["generator", "L", "R", "MSE to the adversarial image", "MSE to the clean image",
                         "defended accuracy", "defended = the attack's label (fooled images)", "seconds"], rows),
        *grid,
    ])


def wrong_grid(path: Path, images, adversarial, projections, labels, fooled_to, defended) -> list[str]:
    """Save the defense's mistakes as rows (clean, adversarial, projection); their labels as report lines."""
    wrong = (defended != labels).nonzero()[:, 0].tolist()
    if not wrong:
        return ["The defense gets every image right: no grid drawn.", ""]
    rows = torch.stack([torch.stack([images[i], adversarial[i], projections[i]]) for i in wrong]).flatten(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(rows.cpu(), path, nrow=3, padding=2, pad_value=0.5)
    return [f"`{path.name}`: the {len(wrong)} images the defense gets wrong (last generator and L), one per row: "
            "clean, adversarial, projection. Test index: true label / bare classifier on the adversarial image "
            "/ defended prediction:", "",
            ", ".join(f"{i}: {int(labels[i])} / {int(fooled_to[i])} / {int(defended[i])}" for i in wrong), ""]


def main(argv=None) -> None:
    parser = generator_parser(__doc__.splitlines()[0])
    parser.add_argument("--attack", default="fgsm")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--L", type=lambda text: parse_grid(text, "L"), default=[25, 200])
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--grid", type=Path, help="PNG of the defense's mistakes (last generator and L)")
    args = parser.parse_args(argv)
    write_report(run(args), args.out or RESULTS / f"adversarial_fit_{args.dataset}.md")


if __name__ == "__main__":
    main()
