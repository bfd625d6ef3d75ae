"""Defense-GAN-Rec's classifier tuning: on real pairs of images and reconstructions, from the library and the CLI."""
import json
import sys

import pytest
import torch

from classifiers import build_classifier
from defense_hgan import load_classifier
from defense_hgan.checkpoints import file_sha256
from defense_hgan.classifier_io import save_classifier
from defense_hgan.generator_io import save_generator
from defense_hgan.generators import build_generator
from defense_hgan.reconstruction_tuning import tune_on_reconstructions


def _tiny_pair():
    torch.manual_seed(0)
    return build_classifier("mnist", "d"), build_generator("dcgan", "mnist", width=8).eval()


def _data(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(10, (n,), generator=gen)


def test_tuning_changes_a_copy_and_leaves_the_classifier_as_it_was():
    classifier, generator = _tiny_pair()
    before = {key: value.clone() for key, value in classifier.state_dict().items()}
    tuned, metrics = tune_on_reconstructions(classifier, generator, _data(40, 1), _data(8, 2), n=16, L=2, R=1,
                                             epochs=1, device="cpu", progress=False)
    assert all(torch.equal(before[key], value) for key, value in classifier.state_dict().items())
    assert any(not torch.equal(before[key], value) for key, value in tuned.state_dict().items())
    assert not tuned.training
    assert metrics["images"] == 16 and (metrics["L"], metrics["R"]) == (2, 1)
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["recipe"]["lr"] == 3e-4


def test_tuning_is_seeded():
    runs = []
    for _ in range(2):
        classifier, generator = _tiny_pair()
        tuned, _ = tune_on_reconstructions(classifier, generator, _data(40, 1), _data(8, 2), n=16, L=2, R=1,
                                           epochs=1, seed=3, device="cpu", progress=False)
        runs.append(tuned.state_dict())
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in runs[0])


@pytest.mark.parametrize("n, images, message", [
    (0, _data(40, 1), r"n \(training images to reconstruct\) must be in \[1, 40\], got 0"),
    (41, _data(40, 1), r"must be in \[1, 40\], got 41"),
    (4, (torch.rand(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)), "the generator draws 1x28x28 images, the "
                                                                       "training images are 3x32x32"),
])
def test_bad_requests_are_refused_before_any_work(n, images, message):
    classifier, generator = _tiny_pair()
    with pytest.raises(ValueError, match=message):
        tune_on_reconstructions(classifier, generator, images, _data(8, 2), n=n, L=2, R=1, progress=False)


def test_cli_writes_a_loadable_classifier_and_what_made_it(monkeypatch, mnist_root, tmp_path):
    from defense_hgan import cli

    classifier, generator = _tiny_pair()
    save_classifier(classifier, tmp_path / "a.pt", {"dataset": "mnist", "arch": "d", "options": {}})
    save_generator(generator, tmp_path / "g.pt", "dcgan", "mnist", {"width": 8})
    monkeypatch.setattr(sys, "argv", ["defense_hgan", "tune-classifier", "--classifier", str(tmp_path / "a.pt"),
                                      "--generator", str(tmp_path / "g.pt"), "--images", "16", "--L", "2", "--R", "1",
                                      "--epochs", "1", "--data-root", str(mnist_root), "--device", "cpu",
                                      "--out", str(tmp_path / "rec")])
    cli.main()
    tuned = load_classifier(tmp_path / "rec" / "classifier.pt", "cpu")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), classifier.parameters()))
    metrics = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert metrics["generator_sha256"] == file_sha256(tmp_path / "g.pt")
    assert metrics["tuned_from_sha256"] == file_sha256(tmp_path / "a.pt")
    assert metrics["dataset"] == "mnist" and metrics["images"] == 16
