"""benchmarks/training_curve.py's tables: each row's machine is named, not only the first row's."""


def test_a_run_scored_on_two_machines_names_both_with_their_steps(benchmark):
    curve = benchmark("training_curve")
    rows = [{"step": 2000, "machine": "CPU A, AVX512"}, {"step": 4000, "machine": "CPU A, AVX512"},
            {"step": 6000, "machine": "CPU B, AVX2"}]
    assert curve.machines_text(rows) == "machines: CPU A, AVX512 (steps 2000, 4000); CPU B, AVX2 (steps 6000)"
    assert curve.machines_text(rows[:2]) == "machine: CPU A, AVX512"
