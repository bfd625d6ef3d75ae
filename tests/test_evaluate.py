import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from defense_hgan.art_defense import art_classifier
from defense_hgan.evaluation import (
    THREATS, Defense, ExpectedDefended, attack_row, evaluate, gan_defense, threat_estimator, wilson_interval,
)
from defense_hgan.report import write_results
from defense_hgan.sanity import sanity_checks
from tests.test_attacks import SHAPE, blobs, trained_classifier
from tests.test_projection import TinyGenerator

PROJECTION = {"L": 3, "R": 2}
FAST = {"pgd": {"max_iter": 5, "eps_step": 0.1}, "cw": {"max_iter": 3}}
ROW_FIELDS = {"attack", "threat", "settings", "seed", "n", "seconds", "accuracy_undefended", "accuracy_defended",
              "interval_undefended", "interval_defended"}


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


def test_results_files_hold_every_field_for_every_attack_and_threat(classifier, tmp_path):
    images, labels = blobs(2)
    results = evaluate(classifier, gan_defense(TinyGenerator(), **PROJECTION, seed=0), images, labels,
                       dataset="mnist", attacks="fgsm,pgd,cw", threats=THREATS, settings=FAST, eot_samples=2,
                       seed=7, test_set_size=1000, progress=False)
    write_results(results, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["subset"] == {"n": 20, "of": 1000, "selection": "the first n images of the test set"}
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
    markdown = (tmp_path / "results.md").read_text()
    assert "20 of 1000 test images" in markdown and "95% Wilson" in markdown
    assert markdown.count("\n| ") == 2 + len(saved["rows"]) - 1 and "| cw | bpda-eot |" in markdown


def test_rows_are_reproducible_from_the_seed(classifier):
    images, labels = blobs(1)
    options = {"attack": "pgd", "threat": "bpda", "dataset": "mnist", "settings": FAST["pgd"], "seed": 1}
    defense = gan_defense(TinyGenerator(), **PROJECTION)
    first, again = (attack_row(classifier, defense, images, labels, **options) for _ in range(2))
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}


def test_sanity_checks_pass_for_an_honest_model(classifier):
    images, labels = blobs(2)
    report = sanity_checks(classifier, no_defense(), images, labels, dataset="mnist", settings=FAST)
    assert report["passed"], report["checks"]
    assert [c["name"] for c in report["checks"]] == [
        "accuracy falls as eps grows", "unbounded attack succeeds", "pgd at least as strong as fgsm",
        "more iterations do not help"]


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


def test_cli_writes_results_and_refuses_bad_names_in_one_line(mnist_root, tmp_path, monkeypatch):
    classifier, generator = _checkpoints(tmp_path)
    common = ["--classifier", classifier, "--generator", generator, "--data-root", str(mnist_root),
              "--L", "2", "--R", "1", "--n", "4", "--device", "cpu"]
    out = tmp_path / "eval"
    _cli(monkeypatch, *common, "--attacks", "fgsm,pgd", "--threat", "oblivious,bpda", "--eps", "8/255",
         "--settings", "{pgd: {max_iter: 2}}", "--out", str(out))
    saved = json.loads((out / "results.json").read_text())
    assert saved["subset"]["n"] == 4 and saved["subset"]["of"] == 32 and saved["classifier"] == classifier
    assert len(saved["rows"]) == 5 and saved["rows"][1]["settings"]["eps"] == pytest.approx(8 / 255)
    assert saved["rows"][3]["settings"]["max_iter"] == 2 and (out / "results.md").is_file()
    with pytest.raises(SystemExit) as bad:
        _cli(monkeypatch, *common, "--threat", "blackbox", "--out", str(out))
    assert str(bad.value.code) == ("error: unknown threat model ['blackbox']; "
                                   "expected some of ['oblivious', 'bpda', 'bpda-eot']")
    with pytest.raises(SystemExit) as mismatch:
        _cli(monkeypatch, *common, "--dataset", "fashion-mnist", "--out", str(out))
    assert "was trained on mnist, but --dataset is fashion-mnist" in str(mismatch.value.code)
