"""benchmarks/equal_budget.py: which snapshots it pairs at equal steps and at equal CPU time, and what it refuses."""
from pathlib import Path

import pytest


@pytest.fixture
def equal_budget(benchmark):
    return benchmark("equal_budget")


def curve(path: Path, model: str, steps_and_fgsm: list[tuple[int, float]], n: int = 100) -> Path:
    from training_curve import SETTINGS, write_rows

    settings = dict(model=model, dataset="mnist", classifier_sha256="c" * 64, n=n, L=200, R=10, seed=0,
                    attack="fgsm", n_samples=10000)
    assert set(settings) == set(SETTINGS)
    rows = [{"step": step, "snapshot_sha256": f"{step:064d}", **settings, "accuracy_clean": 1.0,
             "accuracy_fgsm": fgsm, "mse_clean": 0.01, "mse_fgsm": 0.04, "mode_kl": 0.01, "classifier_fd": 50,
             "seconds": 1.0, "machine": "test"} for step, fgsm in steps_and_fgsm]
    write_rows([{key: str(value) for key, value in row.items()} for row in rows], path)
    return path


def test_pairs_equal_steps_and_equal_cpu_time(equal_budget, tmp_path):
    cheap = curve(tmp_path / "cheap.csv", "hgan", [(2000, 0.4), (4000, 0.5), (6000, 0.6), (12000, 0.7)])
    dear = curve(tmp_path / "dear.csv", "wgan-gp", [(2000, 0.2), (4000, 0.3)])
    out = tmp_path / "report.md"
    equal_budget.main([str(cheap), str(dear), "--seconds-a", "1", "--seconds-b", "3", "--out", str(out)])
    steps, time = out.read_text().split("## Equal CPU time")
    assert "| 2000 | 2000 | 1.00 [0.96, 1.00] | 1.00 [0.96, 1.00] | +0.00" in steps
    assert "| 0.40 [0.31, 0.50] | 0.20 [0.13, 0.29] | +0.20 [+0.07, +0.32] |" in steps
    assert "\n| 4000 | 4000 |" in steps and "\n| 6000 |" not in steps
    pairs = [line.split(" | ")[:2] for line in time.splitlines() if line.startswith("| ") and line[2].isdigit()]
    # dear's 2,000 steps cost 6,000 s, cheap's 6,000-step snapshot; its 4,000 (12,000 s), cheap's 12,000; cheap's
    # 2,000 and 4,000 come before dear's first snapshot
    assert pairs == [["| 6000", "2000"], ["| 12000", "4000"]]


def test_a_fixed_cost_before_the_first_step_moves_the_pairs(equal_budget, tmp_path):
    cheap = curve(tmp_path / "cheap.csv", "hgan", [(2000, 0.4), (4000, 0.5), (6000, 0.6), (12000, 0.7)])
    dear = curve(tmp_path / "dear.csv", "wgan-gp", [(2000, 0.2), (4000, 0.3)])
    out = tmp_path / "report.md"
    equal_budget.main([str(cheap), str(dear), "--seconds-a", "1", "--seconds-b", "3", "--overhead-a", "2000",
                       "--out", str(out)])
    time = out.read_text().split("## Equal CPU time")[1]
    # dear's 2,000 steps (6,000 s) now buy cheap 4,000 steps after its 2,000 s; its 4,000 (12,000 s) buy 10,000
    assert "A: 2000 s + 1 s per step; B: 0 s + 3 s per step" in time
    assert "\n| 4000 | 2000 |" in time and "\n| 6000 | 2000 |" in time and "\n| 6000 | 4000 |" in time


def test_refuses_curves_scored_on_other_images(equal_budget, tmp_path):
    a = curve(tmp_path / "a.csv", "hgan", [(2000, 0.4)])
    b = curve(tmp_path / "b.csv", "wgan-gp", [(2000, 0.2)], n=500)
    with pytest.raises(SystemExit, match="n: 100 vs 500"):
        equal_budget.main([str(a), str(b), "--seconds-a", "1", "--seconds-b", "1", "--out", str(tmp_path / "r.md")])
