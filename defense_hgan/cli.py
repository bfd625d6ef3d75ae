"""The command line: ``python -m defense_hgan COMMAND --flag value``.

Each command is a thin function over the library, so the CLI, tests and
notebooks run the same code.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def train_classifier(
    dataset: str = "mnist",
    arch: str | None = None,
    epochs: int | None = None,
    out: str = "runs/classifier",
    data_root: str | None = None,
    download: bool = False,
    device: str = "auto",
    seed: int = 0,
):
    """Train a classifier; writes OUT/classifier.pt and OUT/metrics.json.

    Args:
        dataset: mnist, fashion-mnist or cifar10.
        arch: a, b, c or d for (fashion-)mnist; fast for cifar10 (default: a / fast).
        epochs: passes over the training set (default: 5 for mnist models, 10 for cifar10).
        out: output folder.
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        device: auto (CUDA when present), cpu or cuda.
        seed: seed for initialisation and data order.
    """
    from classifiers import DEFAULT_ARCH, build_classifier
    from classifiers.training import recipe_for, train_classifier as fit
    from defense_hgan.classifier_io import save_classifier
    from defense_hgan.data import load_dataset

    arch = DEFAULT_ARCH.get(dataset) if arch is None else str(arch).lower()
    model = build_classifier(dataset, arch)
    if epochs is None:
        epochs = 10 if dataset == "cifar10" else 5
    train = load_dataset(dataset, train=True, root=data_root, download=download)
    test = load_dataset(dataset, train=False, root=data_root, download=download)
    metrics = fit(model, train, test, epochs=int(epochs), recipe=recipe_for(dataset), device=device, seed=seed)
    metrics = {"dataset": dataset, "arch": arch, **metrics}
    out_dir = Path(out)
    save_classifier(model, out_dir / "classifier.pt", {"dataset": dataset, "arch": arch, "options": {}})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {epochs} epochs in {metrics['seconds']} s -> {out_dir}")
    return None


def _not_yet(name: str, issue: str):
    def command(**_flags):
        raise SystemExit(f"'{name}' is not yet implemented (planned in the {issue} issue)")

    command.__doc__ = f"Not yet implemented (the {issue} issue)."
    return command


COMMANDS = {
    "train-classifier": train_classifier,
    "train-generator": _not_yet("train-generator", "generators"),
    "evaluate": _not_yet("evaluate", "attack evaluation"),
    "sweep": _not_yet("sweep", "L/R sweep"),
}


def main() -> None:
    """Run the CLI; bad input (unknown names, missing data or checkpoints) ends in one line, not a traceback."""
    import fire

    from defense_hgan.checkpoints import CheckpointError
    from defense_hgan.data import DatasetNotFoundError

    try:
        fire.Fire(COMMANDS, name="python -m defense_hgan")
    except (DatasetNotFoundError, CheckpointError, ValueError) as err:
        sys.exit(f"error: {err}")
