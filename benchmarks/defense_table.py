"""HGAN Tables 8 and 9 from our evaluations, beside the paper's numbers.

Reads every ``benchmarks/results/paper_tables/DATASET-MODEL/THREAT/results.json``
(written by ``paper_tables.sh``, or ``evaluate`` with such an --out) and
writes ``benchmarks/results/defense_tables.md``: per dataset, one row per
defense and threat model with the defended accuracy [95% Wilson interval] for
no attack, FGSM, PGD and CW-L2 (and APGD-CE, APGD-DLR, Square and AutoAttack
where a run has them), then the strongest attack run: the lowest defended
accuracy over the row's attacks, named; the undefended classifier's row, and
the paper's rows; each of our rows' notes gives the sanity checks' verdict where
they ran. Incomplete evaluations are shown with what they have, marked, as
are rows whose sanity checks failed.

    python benchmarks/defense_table.py [--readme README.md]

With ``--readme``, each dataset's table also replaces the block between
``<!-- defense_table: DATASET -->`` and ``<!-- /defense_table -->`` there.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import NamedTuple

from defense_hgan.generators import GENERATOR_MODELS
from defense_hgan.report import accuracy_text, cached_text, failed_checks, strongest
from measure import markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results"
# attack -> column; the first four always, the others where a run has them
COLUMNS = {"none": "no attack", "fgsm": "FGSM", "pgd": "PGD", "cw": "CW-L2", "apgd-ce": "APGD-CE",
           "apgd-dlr": "APGD-DLR", "square": "Square", "autoattack": "AutoAttack"}
ALWAYS = ("none", "fgsm", "pgd", "cw")
NAMES = {"wgan-gp": "Defense-GAN", "hgan": "Defense-HGAN"}  # the papers' names; other models: Defense-MODEL
# HGAN paper (Tables 8 and 9, L = 200, R = 10): the "no attack" column, then FGSM eps 0.3, PGD, CW-L2.
# The paper gives no subset size, threat model beyond Defense-GAN's white-box setting, or PGD / CW settings.
PAPER = {
    "mnist": {"Defense-GAN": (0.989, 0.961, 0.956, 0.945), "Defense-HGAN": (0.991, 0.974, 0.969, 0.965)},
    "cifar10": {"Defense-GAN": (0.763, 0.684, 0.671, 0.646), "Defense-HGAN": (0.794, 0.741, 0.738, 0.731)},
}
TITLES = {"mnist": "MNIST (HGAN Table 8)", "cifar10": "CIFAR-10 (HGAN Table 9)"}


class Run(NamedTuple):
    """One evaluation: ``model`` and ``threat`` from its folder's names, its results and where they are."""

    model: str
    threat: str
    results: dict
    path: Path


def load(root: Path) -> dict[str, list[Run]]:
    """{dataset: runs} for every results.json under ROOT/DATASET-MODEL/THREAT/."""
    found: dict[str, list[Run]] = {}
    for path in sorted(root.glob("*/*/results.json")):
        dataset, model = path.parent.parent.name.split("-", 1)
        where = Path(root.name) / path.relative_to(root)  # as the report names it
        found.setdefault(dataset, []).append(Run(model, path.parent.name, json.loads(path.read_text()), where))
    return found


def dataset_section(dataset: str, runs: list[Run]) -> list[str]:
    """One dataset's table (the paper's rows, each followed by ours) and notes saying what each of ours ran."""
    return ([f"## {TITLES.get(dataset, dataset)}\n"] + dataset_table(dataset, runs)
            + ["Accuracy [95% Wilson interval] through the defense; the undefended row is the bare classifier "
               "on the oblivious attacks' images of the largest run. The strongest attack is the one of each row "
               "that leaves the lowest accuracy (AutoAttack is itself a per-image worst case: an image counts as "
               "robust only if APGD-CE, APGD-DLR and Square all fail on it). The paper states no subset size or "
               "attack settings beyond FGSM's eps.\n"]
            + [_note(run) for run in _ours(dataset, runs)] + [""])


def dataset_table(dataset: str, runs: list[Run]) -> list[str]:
    """The table's Markdown lines: the undefended classifier, then the paper's rows, each followed by ours."""
    paper = PAPER.get(dataset, {})
    ran = {row["attack"] for run in runs for row in run.results["rows"]}
    columns = [attack for attack in COLUMNS if attack in ALWAYS or attack in ran]
    largest = max(runs, key=lambda run: (run.threat == "oblivious", run.results["subset"]["n"])).results
    bare = [row for row in largest["rows"] if row["threat"] in ("none", "oblivious")]
    rows = [[f"none (classifier `{largest['classifier']}`)", "-", largest["subset"]["n"]]
            + _cells(bare, "oblivious", columns, "undefended")]
    ours = _ours(dataset, runs)
    for name, numbers in paper.items():
        by_column = dict(zip(ALWAYS, numbers))
        weakest = min(ALWAYS[1:], key=by_column.get)
        rows.append([f"{name} (paper)", "white-box", "?"] + [f"{by_column[a]:.3f}" if a in by_column else "-"
                                                             for a in columns]
                    + [f"{by_column[weakest]:.3f} {COLUMNS[weakest]}"])
        rows += [_our_row(run, columns) for run in ours if _name(run.model) == name]
    rows += [_our_row(run, columns) for run in ours if _name(run.model) not in paper]  # e.g. ARGAN: no paper row
    header = ["defense", "threat", "images", *(COLUMNS[attack] for attack in columns), "strongest attack"]
    return markdown_table(header, rows)


def _cells(rows: list[dict], threat: str, columns: list[str], which: str = "defended") -> list[str]:
    """One table row's cells: each column's accuracy under ``threat`` (and no attack), then the strongest attack's."""
    by_attack = {row["attack"]: row for row in rows if row["threat"] in ("none", threat)}
    worst = strongest(rows, threat, which)
    named = f"{accuracy_text(worst, which)} {COLUMNS.get(worst['attack'], worst['attack'])}" if worst else "-"
    return [accuracy_text(by_attack.get(attack), which) for attack in columns] + [named]


def _ours(dataset: str, runs: list[Run]) -> list[Run]:
    """Our runs in table order: by the paper's row they go with, then model, oblivious first."""
    paper = list(PAPER.get(dataset, {}))
    return sorted(runs, key=lambda run: (paper.index(_name(run.model)) if _name(run.model) in paper else len(paper),
                                         run.model, run.threat != "oblivious"))


def update_readme(readme: Path, tables: dict[str, list[str]]) -> None:
    """Replace each ``<!-- defense_table: DATASET -->`` ... ``<!-- /defense_table -->`` block with its table."""
    text = readme.read_text()
    for dataset, lines in tables.items():
        pattern = re.compile(rf"(<!-- defense_table: {re.escape(dataset)} -->\n).*?(<!-- /defense_table -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{readme} has no '<!-- defense_table: {dataset} -->' ... '<!-- /defense_table -->' "
                             f"block to put the {dataset} table in")
        text = pattern.sub(lambda match: match[1] + "\n".join(lines) + "\n" + match[2], text)
    readme.write_text(text)


def _name(model: str) -> str:
    """A model's row name, also for a variant named after it (hgan-frozen-10k: Defense-HGAN)."""
    base = next((known for known in GENERATOR_MODELS if model == known or model.startswith(known + "-")), model)
    return NAMES.get(base, f"Defense-{base.upper()}")


def _our_row(run: Run, columns: list[str]) -> list:
    label = (f"{_name(run.model)} (ours, {run.model})" + (" **incomplete**" if run.results.get("pending") else "")
             + (" **sanity checks failed**" if failed_checks(run.results) else ""))
    return [label, run.threat, run.results["subset"]["n"]] + _cells(run.results["rows"], run.threat, columns)


def _note(run: Run) -> str:
    """What one of our rows ran: generator, projection, attacker, seed, time, attack settings, results file."""
    d, results = run.results["defense"], run.results
    described = "; ".join(f"{row['attack']}: {_described(row['settings'])}" for row in results["rows"]
                          if row["attack"] != "none")
    attacker = f", attacker's projection L={d['attacker_L']}, R={d['attacker_R']}" if run.threat != "oblivious" else ""
    if attacker and "attacker_warm_L" in d:
        attacker += f" warm-started ({d['attacker_warm_L']} steps from each image's previous latent)"
    pending = f" Still to run: {', '.join(results['pending'])}." if results.get("pending") else ""
    cached = cached_text(results["rows"])
    pending += f" Adversarial images read from the cache (time excludes crafting them): {cached}." if cached else ""
    return (f"- {_name(run.model)} (ours, {run.model}), {run.threat}: generator `{results.get('generator')}`, "
            f"L={d['L']}, R={d['R']}, seed {results['seed']}{attacker}, {results['seconds'] / 60:.0f} min "
            f"of compute{'; ' + described if described else ''}.{_sanity(results)}{pending} "
            f"Full results: `{run.path.with_suffix('.md')}`.")


def _described(settings: dict) -> str:
    """'norm inf, eps 0.3, ...' (a worst case's parts in brackets), without throughput and the attacker's projection."""
    return ", ".join(f"{k} ({_described(v)})" if isinstance(v, dict) else f"{k} {v:.4g}" if isinstance(v, float)
                     else f"{k} {v}" for k, v in settings.items()
                     if k not in ("batch_size", "verbose", "attacker_L", "attacker_R", "attacker_warm_L"))


def _sanity(results: dict) -> str:
    """' Sanity checks (...): passed.' or which failed, from a run that ran them, else ''."""
    sanity = results.get("sanity")
    if not sanity:
        return ""
    failed = failed_checks(results)
    verdict = "all passed" if not failed else "**FAILED**: " + ", ".join(failed)
    details = "; ".join(check["detail"] for check in sanity["checks"])
    return f" Sanity checks (Carlini et al. 2019; {sanity['attack']} under {sanity['threat']}): {verdict} ({details})."


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=RESULTS / "paper_tables")
    parser.add_argument("--out", type=Path, default=RESULTS / "defense_tables.md")
    parser.add_argument("--readme", type=Path, help="also put each dataset's table in this file's marked block")
    args = parser.parse_args(argv)
    found = load(args.root)
    if not found:
        raise SystemExit(f"no results.json under {args.root}/DATASET-MODEL/THREAT/; run paper_tables.sh first")
    lines = ["# Defense-GAN with our generators against the HGAN paper's Tables 8 and 9\n",
             "Made by `benchmarks/defense_table.py` from the evaluations under "
             f"`benchmarks/results/{args.root.name}/` (commands: `benchmarks/paper_tables.sh`).\n"]
    for dataset, runs in found.items():
        lines += dataset_section(dataset, runs)
    write_report("\n".join(lines), args.out)
    if args.readme:
        update_readme(args.readme, {dataset: dataset_table(dataset, runs) for dataset, runs in found.items()})


if __name__ == "__main__":
    main()
