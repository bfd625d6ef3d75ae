"""BPDA rows' cost: the attacker's projection cold against warm-started, per attack, side by side on the same images.

Cold is today's Table 8 attacker: every attack iteration projects each image
from scratch (--attacker-L 50 --attacker-R 2). Warm projects the clean images
cold once, then starts each image from its latent of the previous iteration
for --warm-L steps and one restart (``gan_defense(attacker_warm_L=K)``). Every
attack and variant crafts on the same first --n test images from the same
seed, and the same deployed defense (L=200, R=10, seed 0) scores them.

Crafting is timed in CPU seconds of this process (and wall seconds): the
machine these run on is shared, and its load moved wall times of identical
work by 25x in one run, while CPU seconds count only this process's work.
Scoring, the same for every variant, is not timed.

One CSV row per (generator, attack, variant) in OUT.csv, written after each:
a rerun crafts only what is missing, and refuses a CSV made with other
settings. The table OUT.md gives the defended accuracy with its 95% Wilson
interval, the CPU seconds and their ratio to the same attack's cold row and
to today's row (the first attack, cold), whether the accuracy lies inside the
cold row's interval (a weaker warm attack leaves more images robust), and the
images robust under one variant but not the other.

    python benchmarks/attacker_projection.py zoo/mnist-wgan-gp/generator.pt --classifier zoo/mnist-a/classifier.pt \\
        --data-root data --n 100 --attacks pgd,apgd-ce --settings '{"apgd-ce": {"max_iter": 20}}' --warm-L 5,10
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from attacks import ATTACKS, attack_settings
from attacks.threats import check_names, make_attack
from defense_hgan import gan_defense, load_classifier, load_dataset
from defense_hgan.checkpoints import file_sha256
from defense_hgan.defense import correct
from defense_hgan.devices import seed_everything
from defense_hgan.report import read_table, write_table
from defense_hgan.scoring import proportion_text, wilson_interval
from defense_hgan.sweep import generator_from_checkpoint, parse_grid
from measure import generator_parser, machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results"
# the settings every row of one CSV shares; a rerun with others is refused
RUN = ("dataset", "classifier_sha256", "n", "seed", "L", "R", "attacker_L", "attacker_R")
COLUMNS = ("generator", "generator_sha256", "model", "attack", "settings", "variant", *RUN,
           "correct_defended", "hits", "cpu_seconds", "wall_seconds", "machine")


def variants(args) -> dict[str, int | None]:
    """{name: attacker_warm_L}: cold first, then each warm step count."""
    return {"cold": None, **{f"warm-{k}": k for k in parse_grid(args.warm_L, "warm-L")}}


def craft_row(classifier, generator, images, labels, attack: str, warm_L: int | None, args) -> dict:
    """One attack under bpda with this attacker projection: its defended hits and the crafting's cost."""
    defense = gan_defense(generator, args.L, args.R, seed=args.seed, attacker_L=args.attacker_L,
                          attacker_R=args.attacker_R, attacker_warm_L=warm_L)
    seed_everything(args.seed)  # every variant draws the same random starts
    crafted = make_attack(attack, "bpda", classifier, defense, dataset=args.dataset,
                          settings=args.settings.get(attack))
    cpu, wall = time.process_time(), time.perf_counter()
    adversarial = crafted(images, labels)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    hits = correct(classifier, adversarial, labels, defense.purify)
    return {"correct_defended": int(hits.sum()), "hits": "".join("1" if hit else "0" for hit in hits.tolist()),
            "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1)}


def measure(rows: list[dict], out: Path, classifier, images, labels, args) -> None:
    """Add to ``rows`` (saved to ``out`` after each) every generator's missing (attack, variant) rows."""
    run = {"dataset": args.dataset, "classifier_sha256": file_sha256(args.classifier), "n": args.n,
           "seed": args.seed, "L": args.L, "R": args.R, "attacker_L": args.attacker_L, "attacker_R": args.attacker_R}
    for row in rows:
        changed = [f"{key} {row[key]} -> {run[key]}" for key in RUN if row[key] != str(run[key])]
        if changed:
            raise SystemExit(f"{out} was measured with other settings ({'; '.join(changed)}); choose another --out")
    done = {(row["generator_sha256"], row["attack"], row["settings"], row["variant"]) for row in rows}
    for path in args.generators:
        _, model, generator = generator_from_checkpoint(path, args.device)
        digest = file_sha256(path)
        for attack in args.attacks:
            settings = json.dumps(attack_settings(attack, args.dataset, **args.settings.get(attack, {})),
                                  sort_keys=True)
            for name, warm_L in variants(args).items():
                if (digest, attack, settings, name) in done:
                    continue
                row = {"generator": path, "generator_sha256": digest, "model": model, "attack": attack,
                       "settings": settings, "variant": name, **run,
                       **craft_row(classifier, generator, images, labels, attack, warm_L, args),
                       "machine": machine(torch.device(args.device))}
                rows.append({key: str(value) for key, value in row.items()})
                write_table(out, COLUMNS, rows)
                print({key: row[key] for key in ("model", "attack", "variant", "correct_defended", "cpu_seconds")},
                      flush=True)


def table(rows: list[dict], args) -> list[str]:
    """One line per generator, attack and variant; ratios and comparisons against the same attack's cold row."""
    lines = []
    for row in rows:
        same = [r for r in rows if (r["generator_sha256"], r["attack"], r["settings"]) ==
                (row["generator_sha256"], row["attack"], row["settings"])]
        cold = next(r for r in same if r["variant"] == "cold")
        today = next((r for r in rows if r["generator_sha256"] == row["generator_sha256"] and r["variant"] == "cold"
                      and r["attack"] == args.attacks[0]), cold)
        n, hits = int(row["n"]), int(row["correct_defended"])
        low, high = wilson_interval(int(cold["correct_defended"]), n)
        projection = f"cold L={row['attacker_L']}, R={row['attacker_R']}"
        if row["variant"] != "cold":
            projection = f"{row['variant'].replace('-', ': ')} steps, R=1 (after one {projection})"
        inside = "-" if row is cold else "yes" if low - 1e-9 <= hits / n <= high + 1e-9 else "**no**"
        only_here = sum(a == "1" and b == "0" for a, b in zip(row["hits"], cold["hits"]))
        only_cold = sum(a == "0" and b == "1" for a, b in zip(row["hits"], cold["hits"]))
        lines.append([row["model"], row["attack"], projection, proportion_text(hits, n), f"{1 - hits / n:.3f}",
                      row["cpu_seconds"], row["wall_seconds"], _ratio(row, cold), _ratio(row, today), inside,
                      "-" if row is cold else f"{only_here} / {only_cold}"])
    return markdown_table(["generator", "attack", "attacker's projection", "defended accuracy [95% CI]",
                           "attack success", "CPU s", "wall s", "CPU / cold", f"CPU / {args.attacks[0]} cold",
                           "inside cold's CI", "robust only here / only cold"], lines)


def _ratio(row: dict, reference: dict) -> str:
    return f"{float(row['cpu_seconds']) / max(float(reference['cpu_seconds']), 0.1):.2f}"


def main(argv=None) -> None:
    parser = generator_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="attack the first n test images")
    parser.add_argument("--attacks", type=lambda text: check_names(text, ATTACKS, "attack"), default=["pgd"],
                        help="attacks of the attacks package, comma-separated; the first is today's (pgd: Table 8's)")
    parser.add_argument("--settings", type=json.loads, default={},
                        help='ART overrides per attack, e.g. \'{"pgd": {"max_iter": 80}}\'')
    parser.add_argument("--L", type=int, default=200, help="the deployed defense's projection steps (scores)")
    parser.add_argument("--R", type=int, default=10, help="... and restarts")
    parser.add_argument("--attacker-L", type=int, default=50, help="the attacker's cold projection steps")
    parser.add_argument("--attacker-R", type=int, default=2, help="... and restarts")
    parser.add_argument("--warm-L", default="10", help="warm-start steps to compare, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "attacker_projection",
                        help="OUT.csv (the rows, resumed) and OUT.md (the table)")
    args = parser.parse_args(argv)
    out = args.out.with_suffix(".csv")
    rows = read_table(out, COLUMNS, what="attacker-projection CSV") if out.exists() else []
    device = torch.device(args.device)
    classifier = load_classifier(args.classifier, device)
    images, labels = load_dataset(args.dataset, train=False, root=args.data_root)
    images, labels = images[: args.n].to(device), labels[: args.n].to(device)
    measure(rows, out, classifier, images, labels, args)
    used = {attack: attack_settings(attack, args.dataset, **args.settings.get(attack, {})) for attack in args.attacks}
    settings = "; ".join(f"{attack} `{json.dumps(values)}`" for attack, values in used.items())
    write_report("\n".join([
        "# BPDA rows' cost: the attacker's projection cold against warm-started\n",
        f"Made by `benchmarks/attacker_projection.py` (machine: {rows[0]['machine']}): bpda on the first {args.n} "
        f"{args.dataset} test images, seed {args.seed}; every row crafted from the same random starts and scored by "
        f"Defense-GAN with L={args.L}, R={args.R}; attack settings: {settings}. CPU s: this process's CPU seconds "
        f"crafting the row (wall s beside it depends on the machine's other load); scoring is not timed. From "
        f"`{out}`.\n",
        *table(rows, args)]), args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
