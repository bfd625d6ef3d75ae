"""Training curves: a generator's defense and quality at each snapshot of its run.

``train-generator --snapshot-every K`` keeps the generator every K steps in
RUN/snapshots/step_XXXXXX.pt. ``score`` measures each snapshot on one fixed set,
the first --n test images:

  accuracy_clean, accuracy_fgsm  defended accuracy (classifier on the projection, L, R, seed) of the clean
                                 images and of oblivious FGSM images, crafted once against the bare classifier
  mse_clean, mse_fgsm            their projection MSE (what the projection minimises)
  mode_kl, classifier_fd         the ``metrics`` command's numbers: --n-samples samples against the test set

One CSV row per snapshot, keyed by its step and sha256, written after each
one; a rerun scores only what is new, and it refuses a CSV made with other
settings. ``--until STEP`` follows a run that is still training: it scores each
snapshot as it appears (looking every --poll seconds) until the one at STEP is
scored. ``plot`` draws one line per CSV against the training step.

    python benchmarks/training_curve.py score ~/dh-runs/mnist/dcgan --classifier zoo/mnist-a/classifier.pt --data-root data
    python benchmarks/training_curve.py score ~/dh-runs/mnist/dcgan --classifier ... --every 2000 --until 10000
    python benchmarks/training_curve.py plot benchmarks/results/training_curves/mnist-*.csv \\
        --out docs/figures/training-curves-mnist.png
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import NamedTuple

import torch

from defense_hgan import load_classifier, load_dataset, project
from defense_hgan.checkpoints import file_sha256
from attacks.threats import craft
from defense_hgan.defense import accuracy
from defense_hgan.metrics import generator_metrics
from defense_hgan.report import read_table, write_table
from defense_hgan.sweep import generator_from_checkpoint
from measure import machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "training_curves"
SNAPSHOT = re.compile(r"step_(\d+)\.pt")
# the settings every row of one CSV shares; a rerun with others is refused
SETTINGS = ("model", "dataset", "classifier_sha256", "n", "L", "R", "seed", "attack", "n_samples")
RESULTS_COLUMNS = ("accuracy_clean", "accuracy_fgsm", "mse_clean", "mse_fgsm", "mode_kl", "classifier_fd", "seconds")
COLUMNS = ("step", "snapshot_sha256", *SETTINGS, *RESULTS_COLUMNS, "machine")


def snapshots(run: Path, every: int, waiting: bool = False) -> list[tuple[int, Path]]:
    """(step, path) of RUN/snapshots/step_XXXXXX.pt at multiples of ``every``, in step order.

    A run with none is an error unless ``waiting`` for its first: its training has just begun."""
    found = [(int(match.group(1)), path) for path in (run / "snapshots").glob("step_*.pt")
             if (match := SNAPSHOT.fullmatch(path.name))]
    if not found and not waiting:
        raise SystemExit(f"{run}/snapshots holds no step_XXXXXX.pt: train with --snapshot-every K")
    return sorted((step, path) for step, path in found if step % every == 0)


def read_rows(out: Path) -> list[dict]:
    return read_table(out, COLUMNS, what="training-curve CSV") if out.exists() else []


def write_rows(rows: list[dict], out: Path) -> None:
    write_table(out, COLUMNS, sorted(rows, key=lambda row: int(row["step"])))


def check_same_settings(rows: list[dict], settings: dict, out: Path) -> None:
    for row in rows:
        changed = [f"{key} {row[key]} -> {settings[key]}" for key in SETTINGS if row[key] != str(settings[key])]
        if changed:
            raise SystemExit(f"{out} was scored with other settings ({'; '.join(changed)}); choose another --out")


def score_snapshot(generator, classifier, images, labels, adversarial, test_images, args) -> dict:
    """One row's measurements for one snapshot's generator."""
    start = time.perf_counter()
    row = {}
    for name, batch in (("clean", images), ("fgsm", adversarial)):
        result = project(generator, batch, L=args.L, R=args.R, seed=args.seed)
        row[f"accuracy_{name}"] = accuracy(classifier, result.images, labels)
        row[f"mse_{name}"] = round(float(result.error.mean()), 6)
    quality = generator_metrics(generator, classifier, test_images, n_samples=args.n_samples, n_project=0,
                                seed=args.seed, progress=False)
    row.update(mode_kl=round(quality["mode_kl"], 5), classifier_fd=round(quality["classifier_fd"], 2),
               seconds=round(time.perf_counter() - start, 1))
    return row


def score(args) -> None:
    """Score the run's new snapshots; with --until, go on scoring each new one until the one at that step."""
    out = args.out or RESULTS / f"{args.dataset}-{args.run.name}.csv"
    fixed = None  # made once, when a snapshot first needs it, however many a followed run brings
    announced = False
    while True:
        present = snapshots(args.run, args.every, waiting=args.until is not None)
        rows = read_rows(out)
        todo = unscored(present, rows, out)
        if todo:
            fixed = fixed or fixed_set(args)
            score_snapshots(todo, rows, fixed, args, out)
            announced = False
        if args.until is None or any(step >= args.until for step, _ in present):
            return
        if not announced:  # once per wait, not once per look
            print(f"waiting for {args.run}/snapshots to reach step {args.until} (looking every {args.poll:g} s)",
                  flush=True)
            announced = True
        time.sleep(args.poll)


def unscored(present: list[tuple[int, Path]], rows: list[dict], out: Path) -> list[tuple[int, Path]]:
    """The snapshots of ``present`` that ``rows`` lack; a step scored from other bytes means another run."""
    scored = {row["step"]: row["snapshot_sha256"] for row in rows}
    todo = []
    for step, path in present:
        digest = scored.get(str(step))
        if digest is None:
            todo.append((step, path))
        elif digest != file_sha256(path):
            raise SystemExit(f"{out} scored another snapshot at step {step} than {path}: the run was restarted; "
                             f"choose another --out")
    return todo


class FixedSet(NamedTuple):
    """What every snapshot is scored against: the classifier, the test set, its first --n images and their FGSM."""

    device: torch.device
    classifier: torch.nn.Module
    classifier_sha256: str
    test_images: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    adversarial: torch.Tensor


def fixed_set(args) -> FixedSet:
    device = torch.device(args.device)
    classifier = load_classifier(args.classifier, device)
    test_images, test_labels = load_dataset(args.dataset, train=False, root=args.data_root)
    test_images, test_labels = test_images.to(device), test_labels.to(device)
    images, labels = test_images[: args.n], test_labels[: args.n]
    adversarial = craft(classifier, None, images, labels, attack="fgsm", threat="oblivious", dataset=args.dataset)
    return FixedSet(device, classifier, file_sha256(args.classifier), test_images, images, labels, adversarial)


def score_snapshots(todo: list[tuple[int, Path]], rows: list[dict], fixed: FixedSet, args, out: Path) -> None:
    """Score each snapshot of ``todo`` into ``rows``, writing ``out`` after each."""
    for step, path in todo:
        _, model, generator = generator_from_checkpoint(path, fixed.device)
        settings = dict(model=model, dataset=args.dataset, classifier_sha256=fixed.classifier_sha256, n=args.n,
                        L=args.L, R=args.R, seed=args.seed, attack="fgsm", n_samples=args.n_samples)
        check_same_settings(rows, settings, out)
        measured = score_snapshot(generator, fixed.classifier, fixed.images, fixed.labels, fixed.adversarial,
                                  fixed.test_images, args)
        row = {"step": step, "snapshot_sha256": file_sha256(path), **settings, **measured,
               "machine": machine(fixed.device)}
        rows.append({key: str(value) for key, value in row.items()})
        write_rows(rows, out)
        print({key: row[key] for key in ("step", *RESULTS_COLUMNS)}, flush=True)


def plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("defended accuracy (solid: FGSM, dashed: clean)", ("accuracy_fgsm", "accuracy_clean")),
              ("projection MSE (solid: FGSM, dashed: clean)", ("mse_fgsm", "mse_clean")),
              ("mode KL", ("mode_kl",)), ("classifier FD", ("classifier_fd",)))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4), layout="constrained")
    for csv_path in args.csvs:
        rows = read_rows(csv_path)
        steps = [int(row["step"]) for row in rows]
        color = None
        for ax, (title, columns) in zip(axes, panels):
            for column, style in zip(columns, ("o-", "o--")):
                line, = ax.plot(steps, [float(row[column]) for row in rows], style, color=color,
                                label=csv_path.stem if style == "o-" else None)
                color = line.get_color()
            ax.set(title=title, xlabel="generator steps")
    axes[2].set_yscale("log")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize="small")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.table:
        write_report(curve_tables(args.csvs, args.out), args.table)


def machines_text(rows: list[dict]) -> str:
    """Each machine the snapshots were scored on, with its steps: a run's rows may come from several."""
    steps_by_machine: dict[str, list[str]] = {}
    for row in rows:
        steps_by_machine.setdefault(row["machine"], []).append(str(row["step"]))
    if len(steps_by_machine) == 1:
        return f"machine: {rows[0]['machine']}"
    return "machines: " + "; ".join(f"{name} (steps {', '.join(steps)})" for name, steps in steps_by_machine.items())


def curve_tables(csvs: list[Path], figure: Path) -> str:
    """The CSVs as markdown tables, one per run, with what every row shares."""
    lines = ["# Training curves\n", f"Made by `benchmarks/training_curve.py` (figure: `{figure}`).\n"]
    for csv_path in csvs:
        rows = read_rows(csv_path)
        first = rows[0]
        lines += [f"## {csv_path.stem}\n",
                  f"{first['model']} on {first['dataset']}; the first {first['n']} test images, L={first['L']}, "
                  f"R={first['R']}, seed {first['seed']}, oblivious {first['attack'].upper()}; mode KL and "
                  f"classifier FD on {first['n_samples']} samples; {machines_text(rows)}. From `{csv_path}`.\n",
                  *markdown_table(["step", *RESULTS_COLUMNS],
                                  [[row["step"], *(row[column] for column in RESULTS_COLUMNS)] for row in rows])]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("score", help="score a run's snapshots into a CSV")
    scoring.add_argument("run", type=Path, help="a train-generator OUT folder with snapshots/")
    scoring.add_argument("--classifier", required=True)
    scoring.add_argument("--dataset", default="mnist")
    scoring.add_argument("--data-root")
    scoring.add_argument("--n", type=int, default=100)
    scoring.add_argument("--L", type=int, default=200)
    scoring.add_argument("--R", type=int, default=10)
    scoring.add_argument("--seed", type=int, default=0)
    scoring.add_argument("--n-samples", type=int, default=10_000)
    scoring.add_argument("--every", type=int, default=1, help="score only snapshots at multiples of this step")
    scoring.add_argument("--until", type=int, help="follow a training run: wait for and score each new snapshot "
                                                   "until the one at this step is scored")
    scoring.add_argument("--poll", type=float, default=60.0, help="with --until, seconds between looks")
    scoring.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    scoring.add_argument("--out", type=Path, help=f"the CSV (default {RESULTS}/DATASET-RUNNAME.csv)")
    plotting = commands.add_parser("plot", help="plot CSVs against the training step")
    plotting.add_argument("csvs", type=Path, nargs="+")
    plotting.add_argument("--out", type=Path, required=True)
    plotting.add_argument("--table", type=Path, help="also write the CSVs as markdown tables here")
    args = parser.parse_args(argv)
    score(args) if args.command == "score" else plot(args)


if __name__ == "__main__":
    main()
