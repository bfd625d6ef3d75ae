"""The attacker's projection under BPDA, cold against warm-started: attack success and time per row, side by side.

Cold is today's Table 8 attacker: every attack iteration projects each image
from scratch (--attacker-L 50 --attacker-R 2). Warm projects the clean images
cold once, then starts each image from its latent of the previous iteration
for --warm-L steps and one restart (``gan_defense(attacker_warm_L=K)``). Each
variant is one resumable ``evaluate`` row of the same attack on the same first
--n test images, same seed, scored by the same deployed defense (L=200, R=10,
seed 0), saved under OUT/DATASET-MODEL/VARIANT/; the table gives the defended
accuracy with its 95% Wilson interval, the seconds per row and their ratio to
cold's, and whether warm's accuracy lies inside cold's interval (a weaker
warm attack would leave more images robust).

    python benchmarks/attacker_projection.py zoo/mnist-wgan-gp/generator.pt --classifier zoo/mnist-a/classifier.pt \\
        --data-root data --n 100 --attack pgd --warm-L 5,10
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from defense_hgan import gan_defense, load_classifier, load_dataset
from defense_hgan.evaluation import evaluate
from defense_hgan.scoring import ATTACKER
from defense_hgan.sweep import generator_from_checkpoint, parse_grid
from measure import generator_parser, machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def variants(args) -> dict[str, int | None]:
    """{folder name: attacker_warm_L}: cold first, then each warm step count."""
    return {"cold": None, **{f"warm-{k}": k for k in parse_grid(args.warm_L, "warm-L")}}


def measure(path: str, classifier, images, labels, args) -> list[dict]:
    """One bpda row per variant for the generator at ``path`` (resumed from OUT where already there)."""
    model, generator = generator_from_checkpoint(path, args.device)[1:]
    rows = []
    for name, warm_L in variants(args).items():
        defense = gan_defense(generator, args.L, args.R, seed=args.seed, attacker_L=args.attacker_L,
                              attacker_R=args.attacker_R, attacker_warm_L=warm_L)
        results = evaluate(classifier, defense, images, labels, dataset=args.dataset, attacks=[args.attack],
                           threats=["bpda"], settings={args.attack: args.settings}, seed=args.seed,
                           out=args.out / f"{args.dataset}-{model}" / name,
                           sources={"classifier": args.classifier, "generator": path})
        rows.append({"model": model, "variant": name, "warm_L": warm_L, **results["rows"][-1]})
    return rows


def table(rows: list[dict], args) -> list[str]:
    """One line per variant; time ratio and interval check against the same generator's cold row."""
    lines = []
    for row in rows:
        cold = next(r for r in rows if r["model"] == row["model"] and r["warm_L"] is None)
        low, high = cold["interval_defended"]
        projection = f"cold L={args.attacker_L}, R={args.attacker_R}"
        if row["warm_L"] is not None:
            projection = f"warm: {row['warm_L']} steps, R=1 (after one {projection})"
        inside = low - 1e-9 <= row["accuracy_defended"] <= high + 1e-9  # the interval's ends are rounded floats
        inside = "-" if row is cold else "yes" if inside else "**no**"
        lines.append([row["model"], projection, f"{row['accuracy_defended']:.3f} [{low_high(row)}]",
                      f"{1 - row['accuracy_defended']:.3f}", f"{row['seconds']:.0f}",
                      f"{row['seconds'] / cold['seconds']:.2f}", inside])
    return markdown_table(["generator", "attacker's projection", "defended accuracy [95% CI]", "attack success",
                           "seconds per row", "time / cold", "inside cold's CI"], lines)


def low_high(row: dict) -> str:
    low, high = row["interval_defended"]
    return f"{low:.3f}, {high:.3f}"


def main(argv=None) -> None:
    parser = generator_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="attack the first n test images")
    parser.add_argument("--attack", default="pgd", help="one attack of the attacks package (pgd: Table 8's)")
    parser.add_argument("--settings", type=json.loads, default={}, help='ART overrides, e.g. \'{"max_iter": 80}\'')
    parser.add_argument("--L", type=int, default=200, help="the deployed defense's projection steps (scores)")
    parser.add_argument("--R", type=int, default=10, help="... and restarts")
    parser.add_argument("--attacker-L", type=int, default=50, help="the attacker's cold projection steps")
    parser.add_argument("--attacker-R", type=int, default=2, help="... and restarts")
    parser.add_argument("--warm-L", default="10", help="warm-start steps to compare, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "attacker_projection",
                        help="evaluation folders (resumed) and, beside them, OUT.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    classifier = load_classifier(args.classifier, device)
    images, labels = load_dataset(args.dataset, train=False, root=args.data_root)
    images, labels = images[: args.n].to(device), labels[: args.n].to(device)
    rows = [row for path in args.generators for row in measure(path, classifier, images, labels, args)]
    settings = json.dumps({k: v for k, v in rows[0]["settings"].items() if k not in ATTACKER}, sort_keys=True)
    report = "\n".join([
        "# The attacker's projection under BPDA: cold against warm-started\n",
        f"Made by `benchmarks/attacker_projection.py` on {machine(device)}: {args.attack} under bpda on the first "
        f"{args.n} {args.dataset} test images, seed {args.seed}, every row scored by Defense-GAN with L={args.L}, "
        f"R={args.R}; attack settings `{settings}`. Each row is the evaluation under `{args.out}/`. Seconds are "
        "the whole row (crafting and scoring), measured in one run per machine unless resumed.\n",
        *table(rows, args)])
    write_report(report, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
