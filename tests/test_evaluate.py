import json
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from attacks.threats import THREATS, ExpectedDefended, threat_estimator
from defense_hgan import defense as defense_module
from defense_hgan.art_defense import art_classifier
from defense_hgan.checkpoints import file_sha256
from defense_hgan.defense import Defense, gan_defense
from defense_hgan.evaluation import evaluate
from defense_hgan.locking import FolderInUseError, output_lock
from defense_hgan.report import read_results, write_results
from defense_hgan.sanity import sanity_checks
from defense_hgan.scoring import attack_row, difference_interval, proportion_text, wilson_interval
from tests.test_attacks import SHAPE, blobs, trained_classifier
from tests.test_projection import TinyGenerator

PROJECTION = {"L": 3, "R": 2}
FAST = {"pgd": {"max_iter": 5, "eps_step": 0.1}, "cw": {"max_iter": 3}}
ROW_FIELDS = {"attack", "threat", "settings", "seed", "n", "seconds", "accuracy_undefended", "accuracy_defended",
              "interval_undefended", "interval_defended", "correct_undefended", "correct_defended"}


@pytest.fixture(scope="module")
def classifier():
    return trained_classifier()


class _Reversed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -grad


class GradientReversal(nn.Module):
    """A toy defense that masks gradients: it changes no image, but hands attackers the reversed gradient."""

    def forward(self, x):
        return _Reversed.apply(x)


def no_defense() -> Defense:
    return Defense(nn.Identity(), nn.Identity(), {"name": "none"})


def masking_defense() -> Defense:
    return Defense(GradientReversal(), GradientReversal(), {"name": "gradient reversal"})


class Counting(nn.Module):
    """A module that counts its calls."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, x):
        self.calls += 1
        return self.module(x)


def counted(defense: Defense) -> Defense:
    """``defense`` with its purify (one call per row scored) and attacked modules counting their calls."""
    return Defense(Counting(defense.purify), Counting(defense.attacked), defense.description, defense.generator)


class Interrupting(Counting):
    """A module that raises KeyboardInterrupt (Ctrl-C) on its ``at``-th call."""

    def __init__(self, module: nn.Module, at: int):
        super().__init__(module)
        self.at = at

    def forward(self, x):
        if self.calls + 1 == self.at:
            raise KeyboardInterrupt
        return super().forward(x)


def interrupted_at(defense: Defense, scoring: int) -> Defense:
    """``defense`` interrupted while scoring for the ``scoring``-th time (one purify call per chunk scored)."""
    return Defense(Interrupting(defense.purify, scoring), defense.attacked, defense.description)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_bpda_gradients_flow_through_the_projection_as_art_defense_computes_them(classifier):
    generator, (images, labels) = TinyGenerator(), blobs(1)
    x, y = images.numpy(), np.eye(10, dtype=np.float32)[labels]
    estimator = threat_estimator("bpda", classifier, gan_defense(generator, **PROJECTION), SHAPE)
    torch.manual_seed(3)
    gradient = estimator.loss_gradient(x, y)
    torch.manual_seed(3)  # the same fresh restarts through art_defense's preprocessor
    expected = art_classifier(classifier, generator, **PROJECTION).loss_gradient(x, y)
    assert np.abs(gradient).sum(axis=(1, 2, 3)).min() > 0
    assert np.allclose(gradient, expected, atol=1e-6)


def test_the_attacker_draws_fresh_restarts_and_the_scorer_does_not(classifier):
    defense, x = gan_defense(TinyGenerator(), **PROJECTION, seed=0), blobs(1)[0]
    assert torch.equal(defense.purify(x), defense.purify(x))
    assert not torch.equal(defense.attacked(x), defense.attacked(x))


def test_eot_returns_log_mean_probabilities_over_independent_draws(classifier):
    defense, x = gan_defense(TinyGenerator(), **PROJECTION), blobs(1)[0]
    torch.manual_seed(4)
    eot = ExpectedDefended(classifier, defense.attacked, samples=3)(x)
    torch.manual_seed(4)  # the same draws: the three copies go through one projection call
    draws = classifier(defense.attacked(x.repeat(3, 1, 1, 1))).softmax(1).view(3, len(x), 10)
    assert torch.allclose(eot.exp(), draws.mean(0), atol=1e-6)
    assert not torch.allclose(draws[0], draws[1])  # the draws differ: restarts are random


def test_eot_gradients_are_nonzero_and_those_of_bpda_for_a_deterministic_defense(classifier):
    images, labels = blobs(1)
    x, y = images.numpy(), np.eye(10, dtype=np.float32)[labels]
    eot = threat_estimator("bpda-eot", classifier, gan_defense(TinyGenerator(), **PROJECTION), SHAPE, eot_samples=2)
    assert np.abs(eot.loss_gradient(x, y)).sum(axis=(1, 2, 3)).min() > 0
    fixed = Defense(nn.Identity(), nn.Identity())
    assert np.allclose(threat_estimator("bpda-eot", classifier, fixed, SHAPE).loss_gradient(x, y),
                       threat_estimator("bpda", classifier, fixed, SHAPE).loss_gradient(x, y), atol=1e-6)


def test_wilson_interval_matches_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_proportion_text_writes_the_share_and_its_wilson_interval():
    assert proportion_text(5, 10) == "0.500 [0.237, 0.763]"
    assert proportion_text(10, 10, digits=2) == "1.00 [0.72, 1.00]"


def test_difference_interval_matches_newcombe():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II example (56/70 - 48/80): [0.0524, 0.3339]
    assert difference_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    low, high = difference_interval(30, 100, 30, 100)
    assert low == pytest.approx(-high) and low < 0 < high


def test_results_files_hold_every_field_for_every_attack_and_threat(classifier, tmp_path):
    images, labels = blobs(2)
    results = evaluate(classifier, gan_defense(TinyGenerator(), **PROJECTION, seed=0), images, labels,
                       dataset="mnist", attacks="fgsm,pgd,cw", threats=THREATS, settings=FAST, eot_samples=2,
                       seed=7, test_set_size=1000, progress=False)
    write_results(results, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["subset"] == {"n": 20, "of": 1000, "selection": "the first n images of the test set",
                               "label_counts": [2] * 10}
    assert saved["seed"] == 7 and saved["defense"]["L"] == 3 and saved["sanity"] is None
    runs = [(row["attack"], row["threat"]) for row in saved["rows"]]
    assert runs == [("none", "none")] + [(a, t) for a in ("fgsm", "pgd", "cw") for t in THREATS]
    for row in saved["rows"]:
        assert ROW_FIELDS <= set(row) and row["n"] == 20 and row["seed"] == 7
        for which in ("undefended", "defended"):
            low, high = row[f"interval_{which}"]
            assert low <= row[f"accuracy_{which}"] <= high
    clean, fgsm = saved["rows"][0], saved["rows"][1]
    assert clean["accuracy_undefended"] == 1.0 and fgsm["accuracy_undefended"] < 0.5  # oblivious FGSM works
    assert fgsm["settings"]["eps"] == 0.3 and saved["rows"][2 * len(THREATS) + 1]["settings"]["max_iter"] == 3
    assert saved["rows"][3]["settings"]["eot_samples"] == 2
    assert saved["pending"] == [] and saved["defense"]["attacker_L"] == 3
    markdown = (tmp_path / "results.md").read_text()
    assert "the first 20 of 1000 test images (per class: 2, 2, 2, 2, 2, 2, 2, 2, 2, 2)" in markdown
    assert "95% Wilson" in markdown and "seed 7" in markdown
    assert "L=3, R=2" in markdown and "| pgd | bpda-eot | " in markdown and "iters 5, inits 1, eot 2 |" in markdown
    assert markdown.count("\n| ") == 2 + len(saved["rows"]) - 1 and "| cw | bpda-eot |" in markdown


def test_rows_are_reproducible_from_the_seed(classifier):
    images, labels = blobs(1)
    options = {"attack": "pgd", "threat": "bpda", "dataset": "mnist", "settings": FAST["pgd"], "seed": 1}
    defense = gan_defense(TinyGenerator(), **PROJECTION)
    first, again = (attack_row(classifier, defense, images, labels, **options) for _ in range(2))
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}


def resumable(classifier, defense, out, attacks="fgsm,pgd", **overrides):
    images, labels = blobs(1)
    options = {"dataset": "mnist", "attacks": attacks, "threats": "oblivious,bpda", "settings": FAST, "seed": 3,
               "test_set_size": 100, "progress": False, "out": out, "sources": {"classifier": "c.pt"}, **overrides}
    return evaluate(classifier, defense, images, labels, **options)


def test_an_evaluation_widened_later_computes_only_the_new_rows(classifier, tmp_path):
    full = resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), tmp_path / "full")
    defense = counted(gan_defense(TinyGenerator(), **PROJECTION))
    first = resumable(classifier, defense, tmp_path / "out", attacks="fgsm")
    assert defense.purify.calls == 3 and read_results(tmp_path / "out") == first  # none, fgsm x 2 threats
    defense.purify.calls = defense.attacked.calls = 0
    resumed = resumable(classifier, defense, tmp_path / "out")
    assert defense.purify.calls == 2 and defense.attacked.calls > 0  # pgd x 2 threats
    assert resumed["rows"][:3] == first["rows"]  # the stored rows as they were, seconds included
    assert without_seconds(resumed["rows"]) == without_seconds(full["rows"])  # as an uninterrupted run's
    assert read_results(tmp_path / "out") == resumed and resumed["pending"] == []
    assert {k: v for k, v in resumed.items() if k not in ("rows", "seconds")} == \
        {k: v for k, v in full.items() if k not in ("rows", "seconds")}
    defense.purify.calls = defense.attacked.calls = 0
    assert resumable(classifier, defense, tmp_path / "out", attacks="pgd") == resumed  # fgsm's rows are kept
    assert defense.purify.calls == defense.attacked.calls == 0


def test_an_interrupted_evaluation_keeps_its_finished_rows_and_resumes(classifier, tmp_path):
    full = resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), tmp_path / "full")
    defense = gan_defense(TinyGenerator(), **PROJECTION)
    with pytest.raises(KeyboardInterrupt):
        resumable(classifier, interrupted_at(defense, 3), tmp_path / "out")  # Ctrl-C in the third row's scoring
    saved = read_results(tmp_path / "out")
    assert without_seconds(saved["rows"]) == without_seconds(full["rows"][:2])  # the two finished rows
    assert saved["pending"] == ["fgsm/bpda", "pgd/oblivious", "pgd/bpda"] and not list((tmp_path / "out").glob("*.tmp"))
    markdown = (tmp_path / "out/results.md").read_text()
    assert "**Incomplete**: still to run fgsm/bpda, pgd/oblivious, pgd/bpda; rerun the same command" in markdown
    defense = counted(defense)
    resumed = resumable(classifier, defense, tmp_path / "out")
    assert defense.purify.calls == 3 and resumed["rows"][:2] == saved["rows"]
    assert without_seconds(resumed["rows"]) == without_seconds(full["rows"]) and resumed["pending"] == []


def test_a_row_in_chunks_merges_their_counts_and_resumes_mid_row(classifier, tmp_path):
    images, labels = blobs(1)  # 10 images: chunks of 4, 4 and 2
    defense = gan_defense(TinyGenerator(), **PROJECTION)
    full = resumable(classifier, defense, tmp_path / "full", attacks="pgd", threats="bpda", chunk=4)
    pgd = full["rows"][1]
    pieces = [attack_row(classifier, defense, images[i : i + 4], labels[i : i + 4], attack="pgd", threat="bpda",
                         dataset="mnist", settings=FAST["pgd"], seed=3) for i in (0, 4, 8)]
    for which in ("undefended", "defended"):
        hits = sum(piece[f"correct_{which}"] for piece in pieces)
        assert pgd[f"correct_{which}"] == hits and pgd[f"accuracy_{which}"] == hits / 10
        assert pgd[f"interval_{which}"] == list(wilson_interval(hits, 10))
    assert pgd["n"] == 10 and full["chunk"] == 4 and full["partial"] == {}

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while scoring pgd's third chunk (after none's 3 chunks, pgd's 2)
        resumable(classifier, interrupted_at(defense, 6), tmp_path / "out", attacks="pgd", threats="bpda", chunk=4)
    saved = read_results(tmp_path / "out")
    assert [part["n"] for part in saved["partial"]["pgd/bpda"]] == [4, 4]
    assert saved["pending"] == ["pgd/bpda (8 of 10 images done)"]
    assert "still to run pgd/bpda (8 of 10 images done)" in (tmp_path / "out/results.md").read_text()
    defense = counted(defense)
    resumed = resumable(classifier, defense, tmp_path / "out", attacks="pgd", threats="bpda", chunk=4)
    assert defense.purify.calls == 1  # only the last chunk
    assert without_seconds(resumed["rows"]) == without_seconds(full["rows"]) and resumed["partial"] == {}
    with pytest.raises(ValueError, match="chunk 4.*has 5"):
        resumable(classifier, defense, tmp_path / "out", attacks="pgd", threats="bpda", chunk=5)


def test_a_narrower_rerun_keeps_an_unfinished_row_listed_and_resumable(classifier, tmp_path):
    defense = gan_defense(TinyGenerator(), **PROJECTION)
    options = {"threats": "bpda", "chunk": 4}
    with pytest.raises(KeyboardInterrupt):  # pgd/bpda stops with 8 of 10 images done, as in the test above
        resumable(classifier, interrupted_at(defense, 6), tmp_path / "out", attacks="pgd", **options)
    narrower = resumable(classifier, defense, tmp_path / "out", attacks="fgsm", **options)
    assert [part["n"] for part in narrower["partial"]["pgd/bpda"]] == [4, 4]
    assert narrower["attacks"] == ["pgd", "fgsm"] and narrower["pending"] == ["pgd/bpda (8 of 10 images done)"]
    defense = counted(defense)
    resumed = resumable(classifier, defense, tmp_path / "out", attacks="pgd,fgsm", **options)
    assert defense.purify.calls == 1 and resumed["partial"] == {} and resumed["pending"] == []  # only pgd's last chunk


@pytest.mark.parametrize("change, message", [
    ({"seed": 4}, "seed 3.*has 4"),
    ({"projection": {"L": 2}}, "defense.L 3.*has 2"),
    ({"projection": {"attacker_R": 1}}, "defense.attacker_R 2.*has 1"),
    ({"eot_samples": 3}, "eot_samples 5.*has 3"),
    ({"sources": {"classifier": "other.pt"}}, "classifier 'c.pt'.*has 'other.pt'"),
    ({"settings": {"fgsm": {"eps": 0.1}}}, r"holds fgsm under oblivious with settings .*'eps': 0.3.*'eps': 0.1"),
])
def test_other_settings_into_the_same_out_are_refused(classifier, tmp_path, change, message):
    resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), tmp_path, attacks="fgsm", threats="oblivious")
    before = (tmp_path / "results.json").read_text()
    change = dict(change)
    defense = gan_defense(TinyGenerator(), **{**PROJECTION, **change.pop("projection", {})})
    with pytest.raises(ValueError, match=message + ".*rerun with the same settings to resume it, or pass another"):
        resumable(classifier, defense, tmp_path, attacks="fgsm", threats="oblivious", **change)
    assert (tmp_path / "results.json").read_text() == before


def test_the_attackers_projection_crafts_and_the_full_one_scores(classifier, tmp_path, monkeypatch):
    calls, real = [], defense_module.project
    monkeypatch.setattr(defense_module, "project",
                        lambda generator, x, L, R, **options: calls.append((L, R, "seed" in options)) or
                        real(generator, x, L, R, **options))
    defense = gan_defense(TinyGenerator(), L=3, R=2, attacker_L=2, attacker_R=1, seed=0)
    assert (defense.purify.L, defense.purify.R, defense.attacked.L, defense.attacked.R) == (3, 2, 2, 1)
    results = resumable(classifier, defense, tmp_path, attacks="pgd", threats="bpda,bpda-eot", eot_samples=2)
    assert set(calls) == {(3, 2, True), (2, 1, False)}  # scored seeded with L, R; attacked with the cheaper one
    assert calls.count((3, 2, True)) == 3 and calls.count((2, 1, False)) >= 2 * FAST["pgd"]["max_iter"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results and saved["defense"]["L"] == 3 and saved["defense"]["attacker_L"] == 2
    for row in saved["rows"][1:]:
        assert (row["settings"]["attacker_L"], row["settings"]["attacker_R"]) == (2, 1)
    assert "BPDA gradients taken at a projection with L=2, R=1; scored with L=3, R=2" in \
        (tmp_path / "results.md").read_text()
    defaults = gan_defense(TinyGenerator(), L=3, R=2).description
    assert (defaults["attacker_L"], defaults["attacker_R"]) == (3, 2)
    with pytest.raises(ValueError, match="attacker_L must be a positive integer"):
        gan_defense(TinyGenerator(), attacker_L=0)


def test_sanity_checks_pass_for_an_honest_model(classifier):
    images, labels = blobs(2)
    report = sanity_checks(classifier, no_defense(), images, labels, dataset="mnist", settings=FAST,
                           tolerance=0.05)  # one image in 20: FAST's 5 PGD iterations leave 1, 10 leave 0
    assert report["passed"], report["checks"]
    assert [c["name"] for c in report["checks"]] == [
        "accuracy falls as eps grows", "unbounded attack succeeds", "pgd at least as strong as fgsm",
        "attack has converged"]


def test_sanity_checks_flag_an_attack_stopped_before_it_converged(classifier):
    images, labels = blobs(2)
    report = sanity_checks(classifier, no_defense(), images, labels, dataset="mnist",
                           settings={"pgd": {"max_iter": 2, "eps_step": 0.08}})  # 0.16 of eps 0.3 in 2 steps
    converged = next(c for c in report["checks"] if c["name"] == "attack has converged")
    fewer, more = converged["values"]["accuracy"]
    assert not converged["passed"] and not report["passed"] and more < fewer - 0.02, converged


def test_sanity_checks_pass_a_difference_of_exactly_the_tolerance(classifier):
    """Accuracies are k / n floats: PGD 0.64 at 100 iterations and 0.62 at 200 (2 images of 100) are within 0.02."""
    images, labels = blobs(2)
    pgd_accuracy = {(0.075, 100): 0.96, (0.15, 100): 0.93, (0.3, 100): 0.64, (0.6, 100): 0.0, (1.0, 100): 0.0,
                    (0.3, 200): 0.62}

    def measure(attack, threat, overrides):  # the recorded rows of a real BPDA run, so only the verdicts are tested
        if attack == "fgsm":
            return {"accuracy_defended": 0.83}
        return {"accuracy_defended": pgd_accuracy[round(overrides["eps"], 3), overrides["max_iter"]]}

    report = sanity_checks(classifier, no_defense(), images, labels, dataset="mnist", measure=measure,
                           settings={"pgd": {"max_iter": 100, "eps_step": 0.03}})
    assert report["passed"], report["checks"]
    assert abs(0.64 - 0.62) > 0.02  # the float arithmetic the slack is for


def test_sanity_checks_flag_a_gradient_masking_defense(classifier, tmp_path):
    images, labels = blobs(2)
    results = evaluate(classifier, masking_defense(), images, labels, dataset="mnist", attacks="pgd",
                       threats="bpda", settings=FAST, sanity=True, progress=False)
    assert results["rows"][1]["accuracy_defended"] == 1.0  # the masked attack "fails": a robustness illusion
    failed = {c["name"] for c in results["sanity"]["checks"] if not c["passed"]}
    assert not results["sanity"]["passed"]
    assert {"accuracy falls as eps grows", "unbounded attack succeeds"} <= failed
    write_results(results, tmp_path)
    markdown = (tmp_path / "results.md").read_text()
    assert "**Sanity checks FAILED**" in markdown and "- **FAIL** unbounded attack succeeds" in markdown
    assert json.loads((tmp_path / "results.json").read_text())["sanity"]["passed"] is False


def test_stored_sanity_checks_are_not_remeasured_but_their_verdict_is_recomputed(classifier, tmp_path):
    images, labels = blobs(1)
    options = {"dataset": "mnist", "attacks": "pgd", "threats": "bpda", "settings": FAST, "progress": False,
               "out": tmp_path}
    first = evaluate(classifier, masking_defense(), images, labels, sanity=True, **options)
    assert first["sanity"]["settings"]["pgd"]["max_iter"] == 5 and first["pending"] == []
    stale = json.loads((tmp_path / "results.json").read_text())
    stale["sanity"].update(passed=True, checks=[])  # as a verdict from an older, wrong check would be
    (tmp_path / "results.json").write_text(json.dumps(stale))
    defense = counted(masking_defense())
    assert evaluate(classifier, defense, images, labels, sanity=True, **options) == first
    assert defense.purify.calls == defense.attacked.calls == 0
    assert evaluate(classifier, defense, images, labels, **options)["sanity"] == first["sanity"]  # kept
    with pytest.raises(ValueError, match="sanity checks with settings.*another --out"):
        evaluate(classifier, defense, images, labels, sanity=True,
                 **{**options, "settings": {**FAST, "fgsm": {"eps": 0.2}}})


def test_sanity_checks_reuse_the_evaluations_rows_and_resume_their_own(classifier, tmp_path):
    images, labels = blobs(1)
    options = {"dataset": "mnist", "attacks": "fgsm,pgd", "threats": "bpda", "settings": FAST, "progress": False,
               "out": tmp_path}
    first = evaluate(classifier, no_defense(), images, labels, sanity=True, **options)
    measured = [(row["attack"], row["settings"]["eps"], row["settings"]["max_iter"]) for row in first["sanity_rows"]]
    # PGD at eps 0.3 with 5 iterations and FGSM at 0.3 are the evaluation's own rows: not run again
    assert measured == [("pgd", 0.075, 5), ("pgd", 0.15, 5), ("pgd", 0.6, 5), ("pgd", 1.0, 5), ("pgd", 0.3, 10)]
    assert first["sanity"]["seconds"] == pytest.approx(sum(row["seconds"] for row in first["sanity_rows"]), abs=0.01)
    interrupted = {**first, "sanity": None, "sanity_rows": first["sanity_rows"][:2], "pending": ["sanity"]}
    write_results(interrupted, tmp_path)
    defense = counted(no_defense())
    resumed = evaluate(classifier, defense, images, labels, sanity=True, **options)
    assert defense.purify.calls == 3  # one score per measurement left
    assert resumed["sanity_rows"][:2] == first["sanity_rows"][:2]
    assert without_seconds(resumed["sanity_rows"]) == without_seconds(first["sanity_rows"])
    assert {k: v for k, v in resumed["sanity"].items() if k != "seconds"} == \
        {k: v for k, v in first["sanity"].items() if k != "seconds"}


def test_unknown_attacks_and_threats_name_the_choices(classifier):
    images, labels = blobs(1)
    with pytest.raises(ValueError, match=r"unknown threat model \['blackbox'\].*'oblivious', 'bpda', 'bpda-eot'"):
        evaluate(classifier, no_defense(), images, labels, dataset="mnist", threats="bpda,blackbox")
    with pytest.raises(ValueError, match=r"unknown attack \['jsma'\].*'fgsm', 'pgd', 'cw'"):
        evaluate(classifier, no_defense(), images, labels, dataset="mnist", attacks=["jsma"])


def _checkpoints(tmp_path):
    from classifiers import build_classifier
    from defense_hgan.classifier_io import save_classifier
    from defense_hgan.generator_io import save_generator
    from defense_hgan.generators import build_generator

    torch.manual_seed(0)
    save_classifier(build_classifier("mnist", "d"), tmp_path / "c.pt", {"dataset": "mnist", "arch": "d", "options": {}})
    save_generator(build_generator("dcgan", "mnist"), tmp_path / "g.pt", "dcgan", "mnist", {})
    return str(tmp_path / "c.pt"), str(tmp_path / "g.pt")


def _cli(monkeypatch, *args):
    """Run ``python -m defense_hgan evaluate ARGS`` in this process (a subprocess would re-import torch and ART)."""
    from defense_hgan.cli import main

    monkeypatch.setattr(sys, "argv", ["python -m defense_hgan", "evaluate", *args])
    main()


@pytest.mark.filterwarnings("ignore:the subset evaluated")
def test_cli_writes_results_and_refuses_bad_names_in_one_line(mnist_root, tmp_path, monkeypatch):
    classifier, generator = _checkpoints(tmp_path)
    common = ["--classifier", classifier, "--generator", generator, "--data-root", str(mnist_root),
              "--L", "2", "--R", "1", "--n", "4", "--device", "cpu"]
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match=r"the subset evaluated \(the first 4 test images\): its labels are far "
                                         r".*label counts \[1, 1, 1, 1, 0, 0, 0, 0, 0, 0\] against \[4, 4, 3,"):
        _cli(monkeypatch, *common, "--attacks", "fgsm,pgd", "--threat", "oblivious,bpda", "--eps", "8/255",
             "--settings", "{pgd: {max_iter: 2}}", "--out", str(out))
    saved = json.loads((out / "results.json").read_text())
    assert saved["subset"]["n"] == 4 and saved["subset"]["of"] == 32 and saved["classifier"] == classifier
    assert saved["subset"]["label_counts"] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert saved["sha256"] == {"classifier": file_sha256(classifier), "generator": file_sha256(generator)}
    assert len(saved["rows"]) == 5 and saved["rows"][1]["settings"]["eps"] == pytest.approx(8 / 255)
    assert saved["rows"][3]["settings"]["max_iter"] == 2 and (out / "results.md").is_file()
    assert saved["defense"]["attacker_L"] == 2 and saved["rows"][4]["settings"]["attacker_R"] == 1
    _cli(monkeypatch, *common, "--attacks", "fgsm,pgd", "--threat", "oblivious,bpda", "--eps", "8/255",
         "--settings", "{pgd: {max_iter: 2}}", "--out", str(out))
    assert json.loads((out / "results.json").read_text()) == saved  # resumed: nothing left to compute
    cheap = tmp_path / "cheap"
    _cli(monkeypatch, *common, "--attacks", "fgsm", "--threat", "bpda", "--attacker-L", "1", "--attacker-R", "1",
         "--out", str(cheap))
    saved = json.loads((cheap / "results.json").read_text())
    defense = saved["defense"]
    assert (defense["L"], defense["attacker_L"], saved["rows"][1]["settings"]["attacker_L"]) == (2, 1, 1)
    with pytest.raises(SystemExit) as other:
        _cli(monkeypatch, *common, "--attacks", "fgsm", "--threat", "bpda", "--out", str(cheap))
    assert str(other.value.code).startswith(f"error: {cheap} holds an evaluation with defense.attacker_L 1, "
                                            "but this one has 2;") and str(other.value.code).endswith("--out")
    with pytest.raises(SystemExit) as bad:
        _cli(monkeypatch, *common, "--threat", "blackbox", "--out", str(out))
    assert str(bad.value.code) == ("error: unknown threat model ['blackbox']; "
                                   "expected some of ['oblivious', 'bpda', 'bpda-eot']")
    with pytest.raises(SystemExit) as mismatch:
        _cli(monkeypatch, *common, "--dataset", "fashion-mnist", "--out", str(out))
    assert "was trained on mnist, but the dataset is fashion-mnist" in str(mismatch.value.code)


def test_sanity_measurements_run_in_chunks_and_resume_mid_measurement(classifier, tmp_path):
    images, labels = blobs(1)  # 10 images: chunks of 4, 4 and 2
    options = {"dataset": "mnist", "attacks": "fgsm,pgd", "threats": "bpda", "settings": FAST, "progress": False,
               "sanity": True, "chunk": 4}
    full = evaluate(classifier, no_defense(), images, labels, out=tmp_path / "full", **options)
    assert [row["n"] for row in full["sanity_rows"]] == [10] * 5 and full["sanity_partial"] == {}
    # none, fgsm and pgd score 3 chunks each; the 11th scoring is the second chunk of the first sanity measurement
    with pytest.raises(KeyboardInterrupt):
        evaluate(classifier, interrupted_at(no_defense(), 11), images, labels, out=tmp_path / "out", **options)
    saved = read_results(tmp_path / "out")
    assert saved["sanity_rows"] == [] and saved["pending"] == ["sanity"]
    [parts] = saved["sanity_partial"].values()
    assert [(part["n"], part["settings"]["eps"]) for part in parts] == [(4, 0.075)]
    defense = counted(no_defense())
    resumed = evaluate(classifier, defense, images, labels, out=tmp_path / "out", **options)
    assert defense.purify.calls == 2 + 4 * 3  # the first measurement's last two chunks, then four more
    assert resumed["sanity_partial"] == {} and resumed["sanity"]["passed"] == full["sanity"]["passed"]
    assert without_seconds(resumed["sanity_rows"]) == without_seconds(full["sanity_rows"])


def test_a_checkpoint_spelled_otherwise_resumes_and_a_replaced_one_is_refused(classifier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "g.pt").write_bytes(b"the first generator")
    options = {"attacks": "fgsm", "threats": "oblivious", "out": tmp_path / "out"}
    first = resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), sources={"generator": "zoo/g.pt"},
                      **options)
    defense = counted(gan_defense(TinyGenerator(), **PROJECTION))
    again = resumable(classifier, defense, sources={"generator": "./zoo/g.pt"}, **options)
    assert defense.purify.calls == 0 and again["rows"] == first["rows"]  # the same bytes: resumed, not rerun
    assert again["generator"] == "zoo/g.pt" and again["sha256"] == {"generator": file_sha256("zoo/g.pt")}
    (tmp_path / "zoo" / "g.pt").write_bytes(b"another generator at the same path")
    before = (tmp_path / "out" / "results.json").read_text()
    with pytest.raises(ValueError, match=r"holds an evaluation with generator 'zoo/g.pt' of sha256 \w{12}, but that "
                                         r"file has changed since: it was replaced \(sha256 \w{12}\); rerun"):
        resumable(classifier, defense, sources={"generator": "zoo/g.pt"}, **options)
    assert (tmp_path / "out" / "results.json").read_text() == before and defense.purify.calls == 0


def test_results_of_an_older_version_are_refused_until_vouched_for(classifier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.pt").write_bytes(b"a generator")
    options = {"attacks": "fgsm", "threats": "oblivious", "out": tmp_path / "out", "sources": {"generator": "g.pt"}}
    first = resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), **options)
    older = {k: v for k, v in first.items() if k != "sha256"}  # as an older version wrote it: paths only,
    older["subset"] = {k: v for k, v in first["subset"].items() if k != "label_counts"}  # no label counts
    (tmp_path / "out" / "results.json").write_text(json.dumps(older))
    defense = counted(gan_defense(TinyGenerator(), **PROJECTION))
    with pytest.raises(ValueError, match=r"generator 'g.pt' recorded by path only \(an older version wrote it\), so "
                                         r"this run cannot check .*; if it is, add .*\"sha256\"") as refused:
        resumable(classifier, defense, **options)
    vouched = json.loads(str(refused.value).split("add ", 1)[1].split(" to ", 1)[0])
    (tmp_path / "out" / "results.json").write_text(json.dumps({**older, **vouched}))
    resumed = resumable(classifier, defense, **options)
    assert resumed["rows"] == first["rows"] and defense.purify.calls == 0
    assert resumed["subset"] == older["subset"]  # no label counts stamped on rows measured without them


def test_cifar10_results_from_before_the_interleaved_order_are_refused(classifier, tmp_path):
    options = {"attacks": "fgsm", "threats": "oblivious", "out": tmp_path / "out", "dataset": "cifar10"}
    first = resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), **options)
    first["subset"].pop("label_counts")  # as written before the test set was read class-interleaved
    (tmp_path / "out" / "results.json").write_text(json.dumps(first))
    with pytest.raises(ValueError, match="from before the test set was read class-interleaved"):
        resumable(classifier, gan_defense(TinyGenerator(), **PROJECTION), **options)


def test_committed_results_still_read_and_render():
    from pathlib import Path

    from defense_hgan.report import results_markdown

    root = Path(__file__).resolve().parents[1]
    committed = [*root.glob("benchmarks/results/paper_tables/*/*"), *root.glob("benchmarks/results/bpda_followups/*")]
    assert committed
    for path in sorted(committed):
        results = read_results(path)
        assert results["rows"] or results["pending"], path  # a run committed part way has pending rows instead
        assert "test images" in results_markdown(results)
        for name, digest in results.get("sha256", {}).items():  # vouched for: the zoo file they were measured with
            assert file_sha256(root / results[name]) == digest, (path, name)


def test_an_out_locked_by_another_run_is_refused_before_any_work(classifier, tmp_path):
    defense = counted(gan_defense(TinyGenerator(), **PROJECTION))
    with output_lock(tmp_path / "out"):
        with pytest.raises(FolderInUseError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
            resumable(classifier, defense, tmp_path / "out")
    assert defense.purify.calls == 0 and not (tmp_path / "out" / "results.json").exists()


def test_a_classifier_or_generator_of_another_dataset_is_refused(tmp_path):
    images, labels = blobs(1)
    cifar = trained_classifier()
    cifar.dataset = "cifar10"  # as load_classifier marks a CIFAR-10 checkpoint
    with pytest.raises(ValueError, match="the classifier was trained on cifar10, but the dataset is mnist"):
        evaluate(cifar, no_defense(), images, labels, dataset="mnist", attacks="fgsm", progress=False)
    generator = TinyGenerator()
    generator.dataset = "cifar10"
    with pytest.raises(ValueError, match="the generator was trained on cifar10, but the dataset is mnist"):
        evaluate(trained_classifier(), gan_defense(generator, **PROJECTION), images, labels, dataset="mnist",
                 attacks="fgsm", progress=False)


def test_cli_refuses_an_out_that_is_a_file_in_one_line(mnist_root, tmp_path, monkeypatch):
    classifier, generator = _checkpoints(tmp_path)
    (tmp_path / "results").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as refused:
        _cli(monkeypatch, "--classifier", classifier, "--generator", generator, "--data-root", str(mnist_root),
             "--L", "1", "--R", "1", "--n", "10", "--attacks", "fgsm", "--threat", "oblivious", "--device", "cpu",
             "--out", str(tmp_path / "results"))
    assert str(refused.value.code) == (f"error: {tmp_path / 'results'} must be a folder, but {tmp_path / 'results'} "
                                       "is a file; choose another output folder (--out)")


def test_the_results_store_refuses_a_mixed_run_and_resumes_its_own(tmp_path, monkeypatch):
    from defense_hgan.report import ResultsStore

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.pt").write_bytes(b"a classifier")
    identity = {"classifier": "c.pt", "sha256": {"classifier": file_sha256("c.pt")}, "dataset": "mnist",
                "subset": {"n": 10, "of": 100, "selection": "the first n images of the test set",
                           "label_counts": [1] * 10}, "seed": 0, "confidence_level": 0.95,
                "defense": {"name": "none"}, "chunk": 5}
    store = ResultsStore(identity, tmp_path / "out", ("classifier",))
    assert store.plan(["fgsm"], ["oblivious"], sanity=False) == [("none", "none"), ("fgsm", "oblivious")]
    part = {"attack": "fgsm", "threat": "oblivious", "settings": {"eps": 0.3}, "seed": 0, "n": 5, "seconds": 1.0}
    store.add_part("fgsm/oblivious", part)
    resumed = ResultsStore(identity, tmp_path / "out", ("classifier",))
    assert resumed.resumed and resumed.parts("fgsm/oblivious") == [part]
    assert resumed.plan(["fgsm"], ["oblivious"], sanity=False) == [("none", "none"), ("fgsm", "oblivious")]
    assert resumed.results["pending"] == ["none/none", "fgsm/oblivious (5 of 10 images done)"]
    with pytest.raises(ValueError, match=r"holds fgsm under oblivious with settings \{'eps': 0.3\}, but this run's"):
        resumed.check_rows(lambda attack, threat: {"eps": 0.1})
    with pytest.raises(ValueError, match="holds an evaluation with seed 0, but this one has 1; rerun"):
        ResultsStore({**identity, "seed": 1}, tmp_path / "out", ("classifier",))
    (tmp_path / "c.pt").write_bytes(b"another classifier")
    with pytest.raises(ValueError, match=r"classifier 'c.pt' of sha256 \w{12}, but that file has changed since"):
        ResultsStore({**identity, "sha256": {"classifier": file_sha256("c.pt")}}, tmp_path / "out", ("classifier",))
