"""What a BPDA row costs and leaves: the paper-era settings against the converged ones, on the same images.

Reads two evaluations of one classifier and generator on the same test
images (``paper_tables.sh ... bpda`` with ``BPDA=paper`` and with
``BPDA=converged``, each with its own ``OUT``) and writes, per attack, the
defended accuracy and seconds under each, then the whole row's seconds (attacks,
the no-attack row and the sanity checks), the strongest attack of each, and
each one's sanity verdict. Evaluations of other checkpoints or images are
refused, and unfinished ones are marked.

    python benchmarks/bpda_cost.py benchmarks/results/bpda_cost/mnist-hgan-frozen-10k-paper \\
        benchmarks/results/paper_tables/mnist-hgan-frozen-10k/bpda --out benchmarks/results/bpda_cost.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from defense_hgan.report import accuracy_text, failed_checks, read_results, strongest
from measure import machine, markdown_table, write_report

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> dict:
    results = read_results(path)
    if results is None:
        raise SystemExit(f"{path} holds no results.json; run paper_tables.sh with OUT={path} first")
    return results


def check_comparable(old: dict, new: dict) -> None:
    """Both evaluations must score the same checkpoints on the same images with the same defense."""
    same = {"checkpoints": old["sha256"] == new["sha256"], "images": old["subset"] == new["subset"],
            "defense L and R": (old["defense"]["L"], old["defense"]["R"]) == (new["defense"]["L"], new["defense"]["R"])}
    differ = [what for what, equal in same.items() if not equal]
    if differ:
        raise SystemExit(f"the two evaluations differ in {', '.join(differ)}; compare runs of one setup")


def finished(results: dict) -> bool:
    return not results["pending"] and not results["partial"] and not results.get("sanity_partial")


def described(results: dict) -> str:
    defense = results["defense"]
    warm = defense.get("attacker_warm_L")
    projection = (f"attacker projection L={defense['attacker_L']}, R={defense['attacker_R']}"
                  + (f", then {warm} warm steps per iteration" if warm else ", cold at every iteration"))
    attacks = "; ".join(row["attack"] + (f" {row['settings']['max_iter']} iterations"
                                         if "max_iter" in row["settings"] else "")
                        for row in results["rows"] if row["attack"] != "none")
    return f"{projection}; {attacks}"


def verdict(results: dict) -> str:
    if not results.get("sanity"):
        return "not run"
    failed = failed_checks(results)
    return "all pass" if not failed else "FAIL: " + ", ".join(failed)


def cell(row: dict | None) -> list[str]:
    return [accuracy_text(row), "-" if row is None else f"{row['seconds']:.0f}"]


def strongest_attack(results: dict) -> str:
    row = strongest(results["rows"], "bpda")
    return f"{row['attack']} {accuracy_text(row)}" if row else "-"


def report(old: dict, new: dict, names: tuple[str, str], where: str, argv: list[str]) -> str:
    attacks = list(dict.fromkeys(row["attack"] for results in (old, new) for row in results["rows"]))
    by_attack = [{row["attack"]: row for row in results["rows"]} for results in (old, new)]
    rows = [[attack, *cell(by_attack[0].get(attack)), *cell(by_attack[1].get(attack))] for attack in attacks]
    totals = [results["seconds"] for results in (old, new)]  # results["seconds"] counts the sanity checks too
    both_ran = set(by_attack[0]) & set(by_attack[1])
    shared = [total - sum(row["seconds"] for attack, row in rows_by.items() if attack not in both_ran)
              for total, rows_by in zip(totals, by_attack)]
    rows += [["**whole row** (attacks, no-attack row, sanity checks)", "", f"**{totals[0]:.0f}**",
              "", f"**{totals[1]:.0f}**"],
             ["whole row without the attacks only one of them ran", "", f"{shared[0]:.0f}", "", f"{shared[1]:.0f}"],
             ["strongest attack", strongest_attack(old), "", strongest_attack(new), ""],
             ["sanity checks", verdict(old), "", verdict(new), ""]]
    unfinished = [name for name, results in zip(names, (old, new)) if not finished(results)]
    subset = old["subset"]
    return "\n".join([
        "# BPDA row cost: paper-era settings against converged ones\n",
        f"Classifier `{old['classifier']}`, generator `{old['generator']}`; the first {subset['n']} "
        f"{old['dataset']} test images; the defense scores every attack with L={old['defense']['L']}, "
        f"R={old['defense']['R']}. Machine: {where}. Made by "
        f"`{shlex.join(['python', 'benchmarks/bpda_cost.py', *argv])}`.\n",
        f"- {names[0]}: {described(old)}",
        f"- {names[1]}: {described(new)}\n",
        *markdown_table(["attack under BPDA", f"{names[0]}: defended", "seconds", f"{names[1]}: defended",
                         "seconds"], rows),
        f"Time, paper-era row / converged row: **{totals[0] / totals[1]:.2f}x**; on what both ran (the no-attack "
        f"row, {', '.join(attack for attack in attacks if attack in both_ran - {'none'})}, the sanity checks): "
        f"{shared[0] / shared[1]:.2f}x.",
        *([f"\n**Unfinished:** {', '.join(unfinished)}; the numbers cover what has run."] if unfinished else []),
        "",
    ])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the paper-era settings' evaluation folder (BPDA=paper)")
    parser.add_argument("new", type=Path, help="the converged settings' evaluation folder (BPDA=converged)")
    parser.add_argument("--machine", default=machine(torch.device("cpu")),
                        help="the machine both evaluations ran on (default: this one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bpda_cost.md")
    args = parser.parse_args(argv)
    old, new = load(args.old), load(args.new)
    check_comparable(old, new)
    write_report(report(old, new, ("paper-era", "converged"), args.machine, argv), args.out)


if __name__ == "__main__":
    main()
