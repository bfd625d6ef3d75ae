"""benchmarks/bpda_cost.py: the per-attack cost table of two BPDA evaluations, and what it refuses."""
import json
from pathlib import Path

import pytest


@pytest.fixture
def bpda_cost(benchmark):
    return benchmark("bpda_cost")


def row(attack: str, correct: int, seconds: float, **settings) -> dict:
    return {"attack": attack, "threat": "none" if attack == "none" else "bpda", "settings": settings,
            "accuracy_defended": correct / 10, "interval_defended": [0.0, 1.0], "seconds": seconds}


def evaluation(folder: Path, rows: list[dict], seconds: float, warm: int | None = None, generator_sha="g",
               pending=(), converged=True) -> Path:
    results = {"classifier": "c.pt", "generator": "g.pt", "sha256": {"classifier": "c", "generator": generator_sha},
               "dataset": "mnist", "subset": {"n": 10, "of": 10000}, "pending": list(pending), "partial": {},
               "defense": {"L": 200, "R": 10, "attacker_L": 50, "attacker_R": 2, "attacker_warm_L": warm},
               "rows": rows, "seconds": seconds,
               "sanity": {"checks": [{"name": "attack has converged", "passed": converged}], "seconds": 5.0}}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_reports_each_attack_the_whole_row_and_the_ratio(bpda_cost, tmp_path):
    old = evaluation(tmp_path / "old", [row("none", 10, 5), row("pgd", 4, 100, max_iter=40), row("cw", 6, 50)], 400,
                     converged=False, pending=["cw/bpda"])
    new = evaluation(tmp_path / "new", [row("none", 10, 5), row("pgd", 2, 40, max_iter=100),
                                        row("apgd-ce", 3, 30, max_iter=100)], 100, warm=10)
    out = tmp_path / "cost.md"
    bpda_cost.main([str(old), str(new), "--machine", "test", "--out", str(out)])
    text = out.read_text()
    assert "| pgd | 0.400 [0.000, 1.000] | 100 | 0.200 [0.000, 1.000] | 40 |" in text
    assert "| apgd-ce | - | - | 0.300 [0.000, 1.000] | 30 |" in text
    assert "| **400** |" in text and "| **100** |" in text and "**4.00x**" in text
    assert "| whole row without the attacks only one of them ran |  | 350 |  | 70 |" in text
    assert "on what both ran (the no-attack row, pgd, the sanity checks): 5.00x" in text
    assert "| strongest attack | pgd 0.400 [0.000, 1.000] |  | pgd 0.200 [0.000, 1.000] |  |" in text
    assert "| sanity checks | FAIL: attack has converged |  | all pass |  |" in text
    assert "cold at every iteration" in text and "then 10 warm steps per iteration" in text
    assert "**Unfinished:** paper-era" in text


def test_refuses_evaluations_of_other_checkpoints(bpda_cost, tmp_path):
    old = evaluation(tmp_path / "old", [row("none", 10, 5)], 5)
    new = evaluation(tmp_path / "new", [row("none", 10, 5)], 5, generator_sha="other")
    with pytest.raises(SystemExit, match="differ in checkpoints"):
        bpda_cost.main([str(old), str(new), "--out", str(tmp_path / "cost.md")])
    with pytest.raises(SystemExit, match="holds no results.json"):
        bpda_cost.main([str(tmp_path / "missing"), str(new), "--out", str(tmp_path / "cost.md")])
