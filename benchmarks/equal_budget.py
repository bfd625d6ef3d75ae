"""Does one generator defend better than another at equal training budget? Two training curves, side by side.

Reads two CSVs of ``training_curve.py score`` (same images, L, R, seed,
classifier) and compares defended accuracy (clean and oblivious FGSM) at
equal budget, in two senses:

  steps     the snapshots both runs have at the same generator step
  CPU time  each snapshot of run A against run B's last snapshot within A's
            training time, from each run's seconds per step (--seconds-a/-b,
            measured on one machine, e.g. benchmarks/generator_step.py ratios)

Each accuracy carries its 95% Wilson interval and each difference (A - B)
Newcombe's interval, built for independent samples: on the same images it
is conservative, so a difference whose interval excludes 0 is a safe call.

    python benchmarks/equal_budget.py benchmarks/results/training_curves/mnist-hgan-frozen.csv \\
        benchmarks/results/training_curves/mnist-wgan-gp.csv --seconds-a 0.45 --seconds-b 2.7
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from defense_hgan.scoring import difference_interval, difference_text, proportion_text
from measure import markdown_table, write_report
from training_curve import SETTINGS, read_rows

SHARED = tuple(setting for setting in SETTINGS if setting != "model")
SETS = ("clean", "fgsm")


def check_comparable(a: list[dict], b: list[dict]) -> None:
    """Refuse curves scored on different images or settings: their accuracies are not comparable."""
    if not a or not b:
        raise SystemExit("both CSVs need at least one scored snapshot")
    differ = [f"{key}: {a[0][key]} vs {b[0][key]}" for key in SHARED if a[0][key] != b[0][key]]
    if differ:
        raise SystemExit(f"the curves were scored with other settings ({'; '.join(differ)})")


def correct(row: dict, which: str) -> int:
    return round(float(row[f"accuracy_{which}"]) * int(row["n"]))


def cells(row_a: dict, row_b: dict) -> list[str]:
    """Per set: A and B with Wilson intervals, and A - B with Newcombe's interval."""
    out = []
    for which in SETS:
        n_a, n_b = int(row_a["n"]), int(row_b["n"])
        k_a, k_b = correct(row_a, which), correct(row_b, which)
        out += [accuracy_cell(k_a, n_a), accuracy_cell(k_b, n_b),
                difference_text(k_a / n_a - k_b / n_b, difference_interval(k_a, n_a, k_b, n_b), digits=2)]
    return out


def accuracy_cell(k: int, n: int) -> str:
    return proportion_text(k, n, digits=2)


def equal_steps(a: list[dict], b: list[dict]) -> list[list]:
    by_step = {int(row["step"]): row for row in b}
    return [[int(row["step"]), int(row["step"]), *cells(row, by_step[int(row["step"])])]
            for row in a if int(row["step"]) in by_step]


def equal_time(a: list[dict], b: list[dict], cost_a: tuple[float, float], cost_b: tuple[float, float]) -> list[list]:
    """Pairs at equal CPU time: each snapshot of one run against the other's last snapshot within its time.

    A pair is kept only when the other run has a snapshot at or beyond that time, so neither side is cut
    short by a run that simply has not trained that long yet; the matched snapshot is at most one snapshot
    interval younger, which favours the first run of the pair slightly.
    """
    def time(row, cost):
        overhead, seconds = cost
        return overhead + int(row["step"]) * seconds

    pairs = set()
    for rows, seconds, others, other_seconds, flip in ((a, cost_a, b, cost_b, False), (b, cost_b, a, cost_a, True)):
        for index, row in enumerate(rows):
            within = [j for j, other in enumerate(others) if time(other, other_seconds) <= time(row, seconds)]
            if within and time(others[-1], other_seconds) >= time(row, seconds):
                pairs.add((within[-1], index) if flip else (index, within[-1]))
    return [[int(a[i]["step"]), int(b[j]["step"]), *cells(a[i], b[j])] for i, j in sorted(pairs)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="run A's training-curve CSV")
    parser.add_argument("b", type=Path, help="run B's training-curve CSV")
    parser.add_argument("--seconds-a", type=float, required=True, help="run A's CPU seconds per training step")
    parser.add_argument("--seconds-b", type=float, required=True, help="run B's CPU seconds per training step")
    parser.add_argument("--overhead-a", type=float, default=0.0, help="run A's CPU seconds before its first step")
    parser.add_argument("--overhead-b", type=float, default=0.0, help="run B's CPU seconds before its first step")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "equal_budget.md")
    args = parser.parse_args(argv)
    if not (args.seconds_a > 0 and args.seconds_b > 0 and args.overhead_a >= 0 and args.overhead_b >= 0):
        raise SystemExit("--seconds-a and --seconds-b must be > 0, --overhead-a and --overhead-b >= 0")
    a, b = read_rows(args.a), read_rows(args.b)
    check_comparable(a, b)
    name_a, name_b = args.a.stem, args.b.stem
    header = ["step A", "step B"] + [f"{which} {name}" for which in SETS for name in (name_a, name_b, "A - B")]
    first = a[0]
    lines = [f"# {name_a} (A) against {name_b} (B) at equal training budget", "",
             f"Both curves: the first {first['n']} {first['dataset']} test images, L={first['L']}, R={first['R']}, "
             f"seed {first['seed']}, defended accuracy clean and under oblivious {first['attack'].upper()} "
             f"(classifier sha256 {first['classifier_sha256'][:12]}). Accuracies with 95% Wilson intervals; "
             "A - B with Newcombe's interval for independent samples (conservative on the same images). "
             f"Made by `python benchmarks/equal_budget.py {shlex.join(sys.argv[1:] if argv is None else argv)}`.", "",
             "## Equal steps", "", *markdown_table(header, equal_steps(a, b)),
             f"## Equal CPU time (A: {args.overhead_a:g} s + {args.seconds_a:g} s per step; "
             f"B: {args.overhead_b:g} s + {args.seconds_b:g} s per step)", "",
             *markdown_table(header, equal_time(a, b, (args.overhead_a, args.seconds_a),
                                                (args.overhead_b, args.seconds_b)))]
    write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
