"""benchmarks/training_curve.py score --until: it follows a run still training, scoring each snapshot as it appears."""
import shutil

import pytest

from tests.conftest import make_mnist_root
from tests.distributed_evaluation_worker import save_checkpoints


@pytest.mark.filterwarnings("ignore:n_samples=20 is below")
def test_until_scores_each_new_snapshot_then_stops_at_that_step(benchmark, tmp_path, monkeypatch, capsys):
    curve = benchmark("training_curve")
    paths = save_checkpoints(tmp_path)
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    shutil.copy(paths["generator"], run / "snapshots" / "step_000001.pt")
    looks = []

    def training_writes_the_next_snapshot(seconds):
        """Stands in for the wait: the run saves its step-2 snapshot on the scorer's second look."""
        looks.append(seconds)
        if len(looks) == 2:
            shutil.copy(paths["generator"], run / "snapshots" / "step_000002.pt")

    monkeypatch.setattr(curve.time, "sleep", training_writes_the_next_snapshot)
    prepared = []
    monkeypatch.setattr(curve, "fixed_set", lambda args, make=curve.fixed_set: prepared.append(1) or make(args))
    out = tmp_path / "curve.csv"
    curve.main(["score", str(run), "--classifier", paths["classifier"], "--data-root", str(make_mnist_root(tmp_path)),
                "--n", "4", "--L", "2", "--R", "1", "--n-samples", "20", "--until", "2", "--poll", "7",
                "--device", "cpu", "--out", str(out)])
    rows = curve.read_rows(out)
    assert [row["step"] for row in rows] == ["1", "2"]
    assert looks == [7.0, 7.0]  # two looks, then step 2 was scored and nothing more was awaited
    assert capsys.readouterr().out.count("waiting for") == 1  # announced once per wait, not once per look
    assert len(prepared) == 1  # the classifier, test images and their FGSM are made once for both snapshots


def test_a_run_without_snapshots_is_refused_unless_waiting_for_its_first(benchmark, tmp_path):
    curve = benchmark("training_curve")
    (tmp_path / "snapshots").mkdir()
    with pytest.raises(SystemExit, match="holds no step_XXXXXX.pt: train with --snapshot-every K"):
        curve.snapshots(tmp_path, every=1)
    assert curve.snapshots(tmp_path, every=1, waiting=True) == []
