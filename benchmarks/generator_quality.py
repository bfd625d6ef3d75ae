"""Generator quality on one dataset: the `metrics` command's numbers for several generators, as one table.

For each generator checkpoint it runs ``defense_hgan.metrics.generator_metrics``
(what ``python -m defense_hgan metrics`` runs) against the test set, and reads
the training budget from the ``metrics.json`` that ``train-generator`` wrote
beside the checkpoint. Columns:

  mode KL      KL(p_test || p_gen) of the classifier's label histograms (HGAN Table 1)
  chi-square   Pearson's chi-square of the same histograms (counts of --n-samples each)
  classifier FD  Frechet distance of the classifier's penultimate features, not
               Inception's (its weights cannot be downloaded here)
  projection MSE  mean per-pixel MSE of the first --n-project test images projected
               with Defense-GAN's defaults at L, R (what the defense feeds the classifier)

The JSON is saved after each generator, and a generator already in it with the
same checkpoint bytes and settings is not measured again, so an interrupted
run resumes and adding a model reruns only that model.

Reproduce (writes benchmarks/results/generator_quality_mnist.md):

    python benchmarks/generator_quality.py --classifier zoo/mnist-a/classifier.pt --data-root data \\
        zoo/mnist-dcgan/generator.pt zoo/mnist-wgan-gp/generator.pt zoo/mnist-autogan/generator.pt zoo/mnist-hgan/generator.pt \\
        zoo/mnist-s-argan/generator.pt zoo/mnist-c-argan/generator.pt zoo/mnist-pargan/generator.pt --n-project 100
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from defense_hgan import load_classifier, load_dataset
from defense_hgan.atomic import atomic_write
from defense_hgan.checkpoints import file_sha256
from defense_hgan.metrics import generator_metrics
from defense_hgan.sweep import generator_from_checkpoint
from measure import generator_parser, machine, markdown_table, write_report
from training_curve import SNAPSHOT

RESULTS = Path(__file__).resolve().parent / "results"


def training_budget(generator_path: Path) -> dict:
    """The train-generator metrics.json beside the checkpoint ({} when there is none).

    A snapshot (step_XXXXXX.pt, ``--snapshot-every``) is its run's generator at
    that step: it takes its steps from its name, and the run's metrics.json
    only when that describes the same step.
    """
    path = generator_path.parent / "metrics.json"
    budget = json.loads(path.read_text()) if path.exists() else {}
    snapshot = SNAPSHOT.fullmatch(generator_path.name)
    if snapshot and budget.get("steps") != int(snapshot.group(1)):
        budget = {"steps": int(snapshot.group(1)), "config": budget.get("config", {})}
    return budget


def measured_before(previous: dict, path: Path, digest: str, args) -> dict | None:
    """The earlier result for this very checkpoint (same bytes) under the same settings, if the JSON holds one."""
    entry = previous.get(str(path), {})
    same = {"sha256": digest, "classifier": args.classifier, "n_samples": args.n_samples,
            "n_project": args.n_project, "L": args.L, "R": args.R, "seed": args.seed}
    return entry if entry and all(entry.get(key) == value for key, value in same.items()) else None


def run(args) -> str:
    device = torch.device(args.device)
    classifier = load_classifier(args.classifier, device)
    test_images, _ = load_dataset(args.dataset, train=False, root=args.data_root)
    previous = json.loads(args.json_out.read_text()) if args.json_out.exists() else {}
    rows = []
    for path in map(Path, args.generators):
        _, model, generator = generator_from_checkpoint(path, device)
        digest = file_sha256(path)
        result = measured_before(previous, path, digest, args) or {
            "sha256": digest, "classifier": args.classifier,
            **generator_metrics(generator, classifier, test_images, n_samples=args.n_samples,
                                n_project=args.n_project, L=args.L, R=args.R, seed=args.seed)}
        budget = training_budget(path)
        teacher = budget.get("final_losses", {}).get("teacher")
        minutes = f"{budget['seconds'] / 60:.0f}" if "seconds" in budget else "?"
        if budget.get("steps_this_run", budget.get("steps")) != budget.get("steps"):
            minutes += f" (the last {budget['steps_this_run']} steps, after a resume)"
        rows.append([model, budget.get("steps", "?"), budget.get("config", {}).get("batch_size", "?"), minutes,
                     f"{result['mode_kl']:.4f}", f"{result['mode_chi_square']:.1f}", f"{result['classifier_fd']:.2f}",
                     f"{result['projection_mse']:.5f}", "-" if teacher is None else f"{teacher:.3f}"])
        previous[str(path)] = {**result, "model": model, "training": budget}
        with atomic_write(args.json_out) as f:  # after each generator, whole or not at all: nothing is lost
            f.write(json.dumps(previous, indent=2) + "\n")
        print(rows[-1], flush=True)
    lines = [
        f"# Generator quality on {args.dataset}\n",
        f"Machine: {machine(device)}; torch {torch.__version__}. Classifier `{args.classifier}`; "
        f"{args.n_samples} samples per generator (seed {args.seed}); projection MSE on the first {args.n_project} "
        f"test images at L={args.L}, R={args.R} (Defense-GAN's optimiser). Made by "
        f"`benchmarks/generator_quality.py`; the raw numbers are in `{args.json_out.name}`.\n",
        *markdown_table(["model", "training steps", "batch", "training min", "mode KL", "chi-square", "classifier FD",
                         "projection MSE", "teacher bits/dim (last batch)"], rows),
        "Lower is better in every metric. Training steps are generator updates (WGAN-GP runs 5 critic "
        "updates per generator update); training minutes are the last run's wall time, as its metrics.json "
        "records it, whatever else shared the machine.\n",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = generator_parser(__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--n-project", type=int, default=200)
    parser.add_argument("--L", type=int, default=200)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"generator_quality_{args.dataset}.md"
    args.json_out = args.out.with_suffix(".json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
