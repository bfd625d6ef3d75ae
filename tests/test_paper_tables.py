"""benchmarks/paper_tables.sh builds the table rows' evaluate commands; checked with recorders in place of launchers."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="paper_tables.sh is a bash script")


@pytest.fixture
def env(tmp_path):
    """PATH led by a `python` and a `torchrun` that print how they were called."""
    for launcher in ("python", "torchrun"):
        recorder = tmp_path / launcher
        recorder.write_text(f'#!/bin/bash\necho "{launcher} $*"\n')
        recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


def called(env: dict, *args: str, returncode: int = 0, **variables: str) -> str:
    done = subprocess.run(["bash", str(SCRIPT), *args], env={**env, **variables}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == returncode, done.stderr
    return done.stdout.strip() or done.stderr.strip()


def test_oblivious_row_is_one_python_evaluate_on_500_mnist_images(env):
    command = called(env, "mnist", "hgan-10k", "oblivious", GENERATOR="g.pt")
    assert command.startswith("python -m defense_hgan evaluate zoo/mnist-a/classifier.pt g.pt --dataset mnist")
    assert command.endswith("--attacks fgsm,pgd,cw --n 500")
    assert "--out benchmarks/results/paper_tables/mnist-hgan-10k/oblivious --chunk 100" in command


def test_adversarial_cache_is_passed_to_oblivious_rows(env):
    command = called(env, "cifar10", "wgan-gp-4k", "oblivious", ADVERSARIAL_CACHE="cache/cifar10")
    assert "--chunk 100 --adversarial-cache cache/cifar10 --attacks fgsm,pgd,cw --n 200" in command


def test_classifier_replaces_the_dataset_s_for_a_rec_row(env):
    command = called(env, "cifar10", "hgan-frozen-10k-rec", "oblivious", GENERATOR="g.pt", CLASSIFIER="rec.pt")
    assert command.startswith("python -m defense_hgan evaluate rec.pt g.pt --dataset cifar10")


def test_launch_replaces_python_with_torchrun_and_its_arguments(env):
    command = called(env, "mnist", "hgan-10k", "oblivious", LAUNCH="torchrun --standalone --nproc-per-node 2 -m --",
                     CHUNK="50")
    assert command.startswith("torchrun --standalone --nproc-per-node 2 -m -- defense_hgan evaluate zoo/mnist-a/")
    assert "--chunk 50" in command


def test_unknown_dataset_is_refused_by_name(env):
    message = called(env, "svhn", "hgan", "oblivious", returncode=2)
    assert message == "DATASET must be mnist or cifar10, got svhn"
