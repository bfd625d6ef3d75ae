import csv
import json
import os
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

from attacks import threats
from classifiers import build_classifier
from defense_hgan import cli, projection
from defense_hgan.checkpoints import file_sha256
from defense_hgan.classifier_io import save_classifier
from defense_hgan.defense import gan_defense
from defense_hgan.generator_io import save_generator
from defense_hgan.generators import build_generator
from defense_hgan.plots import cost_table, figure5, load_sweep, show_reconstructions, time_figure
from defense_hgan.locking import FolderInUseError, output_lock
from defense_hgan.scoring import attack_row
from defense_hgan.sweep import CONTENT_COLUMNS, COLUMNS, CSV_NAME, SweepGenerator, parse_grid, run_sweep
from tests.test_attacks import blobs, trained_classifier
from tests.test_projection import TinyGenerator

matplotlib.use("Agg")
GRID = {"L": [2, 3], "R": [1, 2]}


@pytest.fixture(scope="module")
def classifier():
    return trained_classifier()


@pytest.fixture(scope="module")
def generators():
    return [SweepGenerator("g0.pt", "tiny", TinyGenerator(0)), SweepGenerator("g1.pt", "tiny-b", TinyGenerator(1))]


@pytest.fixture
def counts(monkeypatch):
    """Calls of the sweep's clean projections (one per cell) and of attack crafting."""
    calls = {"project": 0, "attack": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(projection, "project", counting("project", projection.project))
    monkeypatch.setattr(threats, "build_attack", counting("attack", threats.build_attack))
    return calls


def sweep(classifier, generators, out, **overrides):
    images, labels = blobs(2)
    options = {"dataset": "mnist", "classifier_name": "c.pt", "out": out, "seed": 0, "progress": False, **GRID,
               **overrides}
    return run_sweep(classifier, generators, images, labels, **options)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def test_one_row_per_cell_and_oblivious_examples_crafted_once(classifier, generators, tmp_path, counts):
    rows = sweep(classifier, generators, tmp_path)
    assert counts == {"project": 8, "attack": 1}
    saved = load_sweep(tmp_path / CSV_NAME)
    assert saved == rows and len(saved) == 2 * 2 * 2 and tuple(saved[0]) == COLUMNS
    assert {(r["generator"], r["generator_model"], r["L"], r["R"]) for r in saved} == {
        (g.path, g.model, L, R) for g in generators for L in GRID["L"] for R in GRID["R"]}
    for row in saved:
        assert (row["n"], row["seed"], row["attack"], row["threat"], row["dataset"]) == (20, 0, "fgsm", "oblivious",
                                                                                        "mnist")
        assert row["accuracy_clean_undefended"] == 1.0 and row["projection_mse"] > 0 and row["projection_seconds"] > 0
        assert 0 <= row["accuracy_clean_defended"] <= 1 and 0 <= row["accuracy_attacked_defended"] <= 1
        assert '"eps": 0.3' in row["attack_settings"]
    assert len({row["accuracy_attacked_undefended"] for row in saved}) == 1  # one set of adversarial images
    assert saved[0]["accuracy_attacked_undefended"] < 0.5


def test_a_cell_matches_evaluate_with_that_defense(classifier, generators, tmp_path):
    row = sweep(classifier, generators[:1], tmp_path, L=3, R=2)[0]
    images, labels = blobs(2)
    defense = gan_defense(generators[0].module, 3, 2, seed=0)
    expected = attack_row(classifier, defense, images, labels, attack="fgsm", threat="oblivious", dataset="mnist")
    clean = attack_row(classifier, defense, images, labels, attack="none", threat="none", dataset="mnist")
    assert row["accuracy_attacked_defended"] == expected["accuracy_defended"]
    assert row["accuracy_attacked_undefended"] == expected["accuracy_undefended"]
    assert row["accuracy_clean_defended"] == clean["accuracy_defended"]
    assert row["projection_mse"] == pytest.approx(projection.project(generators[0].module, images, 3, 2, seed=0)
                                                  .error.mean().item())


def test_bpda_crafts_adversarial_images_in_every_cell(classifier, generators, tmp_path, counts):
    rows = sweep(classifier, generators[:1], tmp_path, threat="bpda", R=[1, 2])
    assert len(rows) == 4 and counts == {"project": 4, "attack": 4}


def test_a_wider_grid_computes_only_the_new_cells(classifier, generators, tmp_path, counts):
    first = sweep(classifier, generators[:1], tmp_path, L=[2])
    assert counts["project"] == 2
    rows = sweep(classifier, generators, tmp_path)
    assert counts["project"] == 8 and counts["attack"] == 2  # 6 new cells; one crafting per run with work to do
    assert rows[:2] == first and len(rows) == 8  # the finished rows kept as they were, seconds included
    counts["attack"] = 0
    assert sweep(classifier, generators, tmp_path) == rows and counts == {"project": 8, "attack": 0}


def test_an_interrupted_sweep_resumes_without_recomputing(classifier, generators, tmp_path, counts):
    full = sweep(classifier, generators, tmp_path / "full")
    path = tmp_path / "cut" / CSV_NAME
    path.parent.mkdir()
    lines = (tmp_path / "full" / CSV_NAME).read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))  # interrupted after 5 of 8 cells
    counts["project"] = 0
    resumed = sweep(classifier, generators, tmp_path / "cut")
    assert counts["project"] == 3
    assert resumed[:5] == full[:5] and without_seconds(resumed) == without_seconds(full)
    assert not list(path.parent.glob("*.tmp"))


def test_a_crash_mid_sweep_keeps_the_finished_cells(classifier, generators, tmp_path, monkeypatch):
    real, calls = projection.project, []

    def crash_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(projection, "project", crash_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(classifier, generators[:1], tmp_path)
    assert len(load_sweep(tmp_path / CSV_NAME)) == 2 and not list(tmp_path.glob("*.tmp"))
    assert len(sweep(classifier, generators[:1], tmp_path)) == 4 and len(calls) == 3 + 2


@pytest.mark.parametrize("change", [{"seed": 1}, {"attack": "pgd"}, {"threat": "bpda"}, {"classifier_name": "x.pt"},
                                    {"settings": {"eps": 0.1}}, {"dataset": "fashion-mnist"}])
def test_a_folder_swept_with_other_settings_is_refused(classifier, generators, tmp_path, change):
    sweep(classifier, generators[:1], tmp_path, L=2, R=1)
    with pytest.raises(ValueError, match="another --out"):
        sweep(classifier, generators[:1], tmp_path, L=2, R=1, **change)


def test_a_csv_of_other_columns_is_refused(classifier, generators, tmp_path):
    (tmp_path / CSV_NAME).write_text("generator,L\nx,1\n")
    with pytest.raises(ValueError, match="not a sweep CSV"):
        sweep(classifier, generators[:1], tmp_path)


@pytest.mark.parametrize("values,expected", [((10, 25), [10, 25]), ("10,25, 50", [10, 25, 50]), (5, [5]),
                                             (["1", "2,3"], [1, 2, 3]), ("2,2,1", [2, 1])])
def test_grids_read_ints_strings_and_tuples(values, expected):
    assert parse_grid(values, "L") == expected


@pytest.mark.parametrize("values", ["0", "a", 2.5, "", (1, -2)])
def test_bad_grids_are_refused(values):
    with pytest.raises(ValueError, match="--L must be positive integers"):
        parse_grid(values, "L")


def test_the_csv_draws_figure5_the_time_cost_and_a_table(classifier, generators, tmp_path):
    sweep(classifier, generators, tmp_path)
    rows = load_sweep(tmp_path / CSV_NAME)
    fig = figure5(rows, L=100, R=10)  # not in the grid: the nearest, L = 3 and R = 2
    for ax, title in zip(fig.axes, ("R = 2", "L = 3")):
        assert ax.get_title() == title
        assert len(ax.get_lines()) == 2 * len(generators) + 2  # attacked + clean per generator, 2 undefended
        assert all(len(line.get_xdata()) == 2 for line in ax.get_lines()[:4])
    assert [line.get_ydata()[1] for line in fig.axes[0].get_lines()[:2]] == [
        next(r[f"accuracy_{k}_defended"] for r in rows if (r["generator"], r["L"], r["R"]) == ("g0.pt", 3, 2))
        for k in ("attacked", "clean")]
    assert [line.get_label() for line in time_figure(rows).axes[0].get_lines()] == ["tiny", "tiny-b"]
    table = cost_table(rows).splitlines()
    assert len(table) == 9 and table[0].split() == ["generator", "L", "R", "clean", "fgsm", "mse", "s/image"]
    images = torch.rand(3, 1, 8, 8)
    assert len(show_reconstructions(images, images, labels=[1, 2, 3], predictions=[1, 2, 0]).axes) == 6
    matplotlib.pyplot.close("all")


def test_repeated_and_comma_separated_generator_flags(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x", "sweep", "--generator", "a.pt,b.pt", "--generator=c.pt"])
    assert cli._repeated_flag("generator", "c.pt") == ["a.pt", "b.pt", "c.pt"]
    assert cli._repeated_flag("generator", "d.pt") == ["d.pt"]  # not from this command line
    assert cli._repeated_flag("generator", ("e.pt", "f.pt")) == ["e.pt", "f.pt"]


@pytest.mark.filterwarnings("ignore:the subset swept")
def test_cli_sweep_writes_and_resumes_the_csv(mnist_root, tmp_path, monkeypatch, capsys):
    for i, model in enumerate(("dcgan", "wgan-gp")):
        options = {"latent_dim": 8, "width": 4}
        save_generator(build_generator(model, "mnist", **options), tmp_path / f"g{i}.pt", model, "mnist", options)
    save_classifier(build_classifier("mnist", "d"), tmp_path / "c.pt", {"dataset": "mnist", "arch": "d", "options": {}})
    command = ["defense_hgan", "sweep", "--classifier", str(tmp_path / "c.pt"), "--generator", str(tmp_path / "g0.pt"),
               "--generator", str(tmp_path / "g1.pt"), "--L", "2,3", "--R", "1", "--n", "6", "--data-root",
               str(mnist_root), "--out", str(tmp_path / "out"), "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", command)
    with pytest.warns(UserWarning, match=r"the subset swept \(the first 6 test images\): its labels are far"):
        cli.main()  # fire reads sys.argv, as python -m defense_hgan does
    with open(tmp_path / "out" / CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["generator_model"], r["L"], r["R"], r["n"]) for r in rows] == [
        ("dcgan", "2", "1", "6"), ("dcgan", "3", "1", "6"), ("wgan-gp", "2", "1", "6"), ("wgan-gp", "3", "1", "6")]
    assert "wgan-gp" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", command + ["--seed", "1"])
    with pytest.raises(SystemExit, match="error: .* seed 0, but this one has 1"):
        cli.main()


def test_a_checkpoint_spelled_otherwise_resumes_and_a_replaced_one_is_refused(classifier, tmp_path, monkeypatch,
                                                                              counts):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo").mkdir()
    for name in ("g.pt", "c.pt"):
        (tmp_path / "zoo" / name).write_bytes(f"the first {name}".encode())
    module = TinyGenerator(0)
    first = sweep(classifier, [SweepGenerator("zoo/g.pt", "tiny", module)], "out", L=2, R=1,
                  classifier_name="zoo/c.pt")
    again = sweep(classifier, [SweepGenerator("./zoo/g.pt", "tiny", module)], "out", L=[2, 3], R=1,
                  classifier_name=str(tmp_path / "zoo" / "c.pt"))
    assert counts["project"] == 2 and again[0] == first[0]  # only L=3 is new
    assert [row["generator"] for row in again] == ["zoo/g.pt"] * 2  # one generator, one name
    assert again[1]["generator_sha256"] == file_sha256("zoo/g.pt")
    assert again[1]["classifier_sha256"] == file_sha256("zoo/c.pt")
    (tmp_path / "zoo" / "g.pt").write_bytes(b"another generator at the same path")
    with pytest.raises(ValueError, match=r"holds a sweep with generator 'zoo/g.pt' of sha256 \w{12}, but that file "
                                         r"has changed since: it was replaced"):
        sweep(classifier, [SweepGenerator("zoo/g.pt", "tiny", module)], "out", L=2, R=1, classifier_name="zoo/c.pt")
    (tmp_path / "zoo" / "c.pt").write_bytes(b"another classifier")
    with pytest.raises(ValueError, match="holds a sweep with classifier 'zoo/c.pt' of sha256 .* replaced"):
        sweep(classifier, [SweepGenerator("zoo/g.pt", "tiny", module)], "out", L=2, R=1, classifier_name="zoo/c.pt")
    assert counts["project"] == 2


def test_a_csv_of_an_older_version_reads_and_refuses_files_it_cannot_check(classifier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.pt").write_bytes(b"a generator")
    rows = sweep(classifier, [SweepGenerator("g.pt", "tiny", TinyGenerator(0))], "out", L=2, R=1)
    assert rows[0]["label_counts"] == json.dumps([2] * 10)  # blobs(2): two images of each class
    older = COLUMNS[:-len(CONTENT_COLUMNS)]
    with open("out/sweep.csv", "w", newline="") as f:  # as an older version wrote it: no content columns
        writer = csv.DictWriter(f, older, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert [{k: v for k, v in row.items() if k in older} for row in load_sweep("out/sweep.csv")] == \
        [{k: v for k, v in row.items() if k in older} for row in rows]
    assert load_sweep("out/sweep.csv")[0]["generator_sha256"] == ""
    with pytest.raises(ValueError, match="generator 'g.pt' recorded by path only .* cannot check that 'g.pt'"):
        sweep(classifier, [SweepGenerator("g.pt", "tiny", TinyGenerator(0))], "out", L=2, R=1)
    assert len(load_sweep(Path(__file__).resolve().parents[1] / "benchmarks/results/sweep-mnist/sweep.csv")) > 0


def test_a_folder_locked_by_another_run_is_refused(classifier, generators, tmp_path, counts):
    with output_lock(tmp_path):
        with pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"):
            sweep(classifier, generators[:1], tmp_path)
    assert counts["project"] == 0 and not (tmp_path / CSV_NAME).exists()
