"""benchmarks/long_run.sh carries a long run between machines: save, then restore on a machine without the run."""
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "long_run.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="long_run.sh is a bash script")


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding only the script and what it sources, a runs folder, and a `python` on PATH that records how
    it was called."""
    repo, runs, bin_dir = tmp_path / "repo", tmp_path / "runs", tmp_path / "bin"
    (repo / "benchmarks").mkdir(parents=True)
    for script in ("long_run.sh", "dataset_classifier.sh"):
        shutil.copy(SCRIPT.parent / script, repo / "benchmarks" / script)
    bin_dir.mkdir()
    recorder = bin_dir / "python"
    recorder.write_text('#!/bin/bash\necho "OMP_NUM_THREADS=$OMP_NUM_THREADS $*" > "$RUNS/called"\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "RUNS": str(runs), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return repo, runs, env


def run(repo: Path, env: dict, *args: str, returncode: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "benchmarks/long_run.sh", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == returncode, done.stderr
    return done


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def wait_for(path: Path) -> str:
    """The backgrounded `python` writes its call shortly after the script returns."""
    for _ in range(100):
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def test_save_keeps_state_generator_and_the_curve_snapshots(checkout):
    repo, runs, env = checkout
    run_dir = runs / "mnist" / "hgan"
    write(run_dir / "training_state.pt", "state")
    write(run_dir / "generator.pt", "generator")
    for step in (1000, 2000, 3000, 4000):
        write(run_dir / "snapshots" / f"step_{step:06d}.pt", str(step))
    run(repo, env, "save", "hgan")
    saved = repo / "zoo" / "training" / "mnist-hgan"
    assert sorted(path.name for path in saved.iterdir()) == [
        "generator.pt", "step_002000.pt", "step_004000.pt", "training_state.pt"]
    assert (saved / "step_004000.pt").read_text() == "4000"


def test_save_of_a_run_without_snapshots_keeps_state_and_generator(checkout):
    repo, runs, env = checkout
    write(runs / "mnist" / "hgan" / "training_state.pt", "state")
    write(runs / "mnist" / "hgan" / "generator.pt", "generator")
    run(repo, env, "save", "hgan")
    saved = repo / "zoo" / "training" / "mnist-hgan"
    assert sorted(path.name for path in saved.iterdir()) == ["generator.pt", "training_state.pt"]


def test_train_on_a_new_machine_restores_state_and_snapshots_and_resumes(checkout):
    repo, runs, env = checkout
    saved = repo / "zoo" / "training" / "mnist-hgan"
    write(saved / "training_state.pt", "state")
    write(saved / "step_002000.pt", "2000")
    out = run(repo, {**env, "THREADS": "2"}, "train", "hgan", "6000").stdout
    assert "restored" in out
    run_dir = runs / "mnist" / "hgan"
    assert (run_dir / "training_state.pt").read_text() == "state"
    assert (run_dir / "snapshots" / "step_002000.pt").read_text() == "2000"  # the curve scorer finds it
    called = wait_for(runs / "called")
    assert called.startswith("OMP_NUM_THREADS=2 -m defense_hgan train-generator --model hgan")
    assert "--steps 6000" in called and called.rstrip().endswith("--resume")


def test_train_keeps_a_machine_s_own_run(checkout):
    repo, runs, env = checkout
    write(repo / "zoo" / "training" / "mnist-hgan" / "training_state.pt", "saved")
    write(runs / "mnist" / "hgan" / "training_state.pt", "newer")
    out = run(repo, env, "train", "hgan").stdout
    assert "restored" not in out
    assert (runs / "mnist" / "hgan" / "training_state.pt").read_text() == "newer"
    assert wait_for(runs / "called").startswith("OMP_NUM_THREADS=1 ")


def test_unknown_action_says_what_is_expected(checkout):
    repo, _, env = checkout
    assert "expected train, curve or save" in run(repo, env, "resume", "hgan", returncode=2).stderr


def test_a_cifar10_run_has_its_own_folders_and_the_zoo_batch(checkout):
    repo, runs, env = checkout
    write(repo / "zoo" / "training" / "cifar10-wgan-gp" / "training_state.pt", "cifar state")
    out = run(repo, {**env, "DATASET": "cifar10"}, "train", "wgan-gp", "2000").stdout
    assert "restored" in out
    assert (runs / "cifar10" / "wgan-gp" / "training_state.pt").read_text() == "cifar state"
    called = wait_for(runs / "called")
    assert "--dataset cifar10" in called and "--batch-size 64" in called  # MNIST's WGAN-GP alone trains at 50
    assert f"--out {runs / 'cifar10' / 'wgan-gp'}" in called


def test_mnist_wgan_gp_keeps_defense_gan_s_batch(checkout):
    repo, runs, env = checkout
    run(repo, env, "train", "wgan-gp")
    called = wait_for(runs / "called")
    assert "--dataset mnist" in called and "--batch-size 50" in called


def test_a_cifar10_curve_scores_with_the_cifar10_classifier(checkout):
    repo, runs, env = checkout
    runs.mkdir()
    run(repo, {**env, "DATASET": "cifar10"}, "curve", "hgan")
    called = (runs / "called").read_text()
    assert "--classifier zoo/cifar10-fast/classifier.pt --dataset cifar10" in called
    assert called.rstrip().endswith("--out benchmarks/results/training_curves/cifar10-hgan.csv")


def test_a_curve_follows_the_run_until_the_step_asked_for(checkout):
    repo, runs, env = checkout
    runs.mkdir()
    run(repo, env, "curve", "dcgan")
    assert "--until" not in (runs / "called").read_text()
    run(repo, {**env, "UNTIL": "16000"}, "curve", "dcgan")
    assert "--every 2000 --until 16000 --out" in (runs / "called").read_text()


def test_unknown_dataset_says_what_is_expected(checkout):
    repo, _, env = checkout
    error = run(repo, {**env, "DATASET": "svhn"}, "train", "hgan", returncode=2).stderr
    assert "DATASET must be mnist or cifar10, got svhn" in error


@pytest.mark.parametrize("variant, departure", [("hgan-frozen-smooth", "--real-label 0.9"),
                                                ("hgan-frozen-slow-d", "--d-lr 5e-5")])
def test_the_slowed_d_variants_take_hgan_frozen_s_committed_teacher(variant, departure, checkout):
    repo, runs, env = checkout
    run(repo, {**env, "DATASET": "cifar10"}, "train", variant)
    called = wait_for(runs / "called")
    assert (f"--model hgan --teacher-from zoo/training/cifar10-hgan-frozen/teacher.pt {departure} "
            "--dataset cifar10") in called
    assert f"--out {runs / 'cifar10' / variant}" in called
