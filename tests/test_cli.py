import json
import subprocess
import sys

import torch

from defense_hgan import load_classifier
from defense_hgan.cli import COMMANDS


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "defense_hgan", "--help"], capture_output=True, text=True,
                            env={"PAGER": "cat", "PATH": ""})
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout + result.stderr  # fire prints help to stderr off a terminal


def test_train_classifier_writes_a_loadable_checkpoint_and_metrics(mnist_root, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "defense_hgan", "train-classifier", "--dataset", "mnist", "--arch", "d",
         "--epochs", "1", "--data-root", str(mnist_root), "--out", str(out), "--device", "cpu"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "epochs", "seconds", "seed", "device"} <= set(metrics)
    assert metrics["epochs"] == 1 and metrics["device"] == "cpu"
    model = load_classifier(out / "classifier.pt", device="cpu")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_missing_data_is_one_clear_message_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "defense_hgan", "train-classifier", "--data-root", str(tmp_path / "empty"),
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "not found" in result.stderr and "Traceback" not in result.stderr
