"""benchmarks/generator_quality.py: the training budget it reports for a final generator and for a snapshot."""
import json


def test_a_snapshot_takes_its_steps_from_its_name_not_from_the_runs_metrics(tmp_path, benchmark):
    training_budget = benchmark("generator_quality").training_budget

    metrics = {"steps": 10_000, "seconds": 5212.7, "config": {"batch_size": 64}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert training_budget(tmp_path / "generator.pt") == metrics
    assert training_budget(tmp_path / "step_010000.pt") == metrics  # the run's last step: its metrics hold
    earlier = training_budget(tmp_path / "step_006000.pt")
    assert earlier == {"steps": 6000, "config": {"batch_size": 64}}  # no seconds: the run's are not this step's
    assert training_budget(tmp_path / "elsewhere" / "step_002000.pt") == {"steps": 2000, "config": {}}
