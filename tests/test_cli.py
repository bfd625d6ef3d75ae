import json
import subprocess
import sys

import pytest
import torch

from defense_hgan import load_classifier
from defense_hgan.cli import COMMANDS, main


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


def run_main(monkeypatch, capsys, *args):
    """``python -m defense_hgan ARGS`` in this process: (exit code, stderr)."""

    monkeypatch.setattr(sys, "argv", ["python -m defense_hgan", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_a_mistyped_flag_exits_2_before_any_work(monkeypatch, capsys, tmp_path):
    code, err = run_main(monkeypatch, capsys, "train-generator", "--stpes", "3", "--out", tmp_path / "run")
    assert code == 2 and "unknown flag --stpes (did you mean --steps?)" in err
    assert not (tmp_path / "run").exists()
    code, err = run_main(monkeypatch, capsys, "evaluate", tmp_path / "absent.pt", tmp_path / "absent.pt",
                         "--atacks", "fgsm")
    assert code == 2 and "unknown flag --atacks (did you mean --attacks?)" in err  # not the missing checkpoint


def test_a_bad_value_exits_2_naming_the_flag(monkeypatch, capsys, tmp_path):
    for value, expected in (("-1", "--n must be an integer >= 0, got '-1'"), ("2.7", "--n must be an integer")):
        code, err = run_main(monkeypatch, capsys, "evaluate", tmp_path / "c.pt", tmp_path / "g.pt", "--n", value)
        assert code == 2 and expected in err
