"""Defense-GAN-Rec's classifier tuning: on real pairs of images and reconstructions, from the library and the CLI."""
import json
import sys

import pytest
import torch

from classifiers import build_classifier
from defense_hgan import load_classifier, project, reconstruction_tuning
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


def test_the_tuning_set_is_the_drawn_images_and_their_reconstructions_with_their_labels(monkeypatch):
    seen = {}
    train_classifier = reconstruction_tuning.train_classifier

    def watched(model, pairs, test, **options):
        seen.update(pairs=pairs, **options)
        return train_classifier(model, pairs, test, **options)

    monkeypatch.setattr(reconstruction_tuning, "train_classifier", watched)
    classifier, generator = _tiny_pair()
    (images, labels), n = _data(40, 1), 16
    tune_on_reconstructions(classifier, generator, (images, labels), _data(8, 2), n, L=2, R=1, epochs=1, seed=3,
                            device="cpu", progress=False)
    pick = torch.randperm(40, generator=torch.Generator().manual_seed(3))[:n]
    tuned_on, tuned_labels = seen["pairs"]
    assert torch.equal(tuned_on[:n], images[pick])
    assert torch.allclose(tuned_on[n:], project(generator, images[pick], L=2, R=1, seed=4).images)
    assert torch.equal(tuned_labels, torch.cat([labels[pick], labels[pick]]))
    assert seen["fresh"] is False  # a fine-tuning keeps a whitening stem the first training derived


@pytest.mark.parametrize("n, message", [(0, r"\(--images\) must be 1 to 40, the size of the training set; got 0"),
                                        (41, "must be 1 to 40, the size of the training set; got 41")])
def test_a_bad_count_is_refused_before_any_projection(n, message, monkeypatch):
    monkeypatch.setattr(reconstruction_tuning, "project", lambda *a, **k: pytest.fail("projected"))
    classifier, generator = _tiny_pair()
    with pytest.raises(ValueError, match=message):
        tune_on_reconstructions(classifier, generator, _data(40, 1), _data(8, 2), n=n, L=2, R=1, progress=False)


def _saved_pair(tmp_path, generator_dataset="mnist"):
    classifier, generator = _tiny_pair()
    save_classifier(classifier, tmp_path / "a.pt", {"dataset": "mnist", "arch": "d", "options": {}})
    save_generator(generator, tmp_path / "g.pt", "dcgan", generator_dataset, {"width": 8})
    return classifier


def _tune_cli(monkeypatch, tmp_path, mnist_root, *flags):
    from defense_hgan import cli

    monkeypatch.setattr(sys, "argv", ["defense_hgan", "tune-classifier", "--classifier", str(tmp_path / "a.pt"),
                                      "--generator", str(tmp_path / "g.pt"), "--images", "16", "--L", "2", "--R", "1",
                                      "--epochs", "1", "--data-root", str(mnist_root), "--device", "cpu",
                                      "--out", str(tmp_path / "rec"), *flags])
    cli.main()


def test_cli_writes_a_loadable_classifier_and_what_made_it(monkeypatch, mnist_root, tmp_path):
    classifier = _saved_pair(tmp_path)
    _tune_cli(monkeypatch, tmp_path, mnist_root)
    tuned = load_classifier(tmp_path / "rec" / "classifier.pt", "cpu")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), classifier.parameters()))
    metrics = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert metrics["generator_sha256"] == file_sha256(tmp_path / "g.pt")
    assert metrics["tuned_from_sha256"] == file_sha256(tmp_path / "a.pt")
    assert metrics["dataset"] == "mnist" and metrics["images"] == 16
    with pytest.raises(SystemExit, match="already holds a classifier.pt; pass --overwrite to replace it"):
        _tune_cli(monkeypatch, tmp_path, mnist_root)
    _tune_cli(monkeypatch, tmp_path, mnist_root, "--overwrite")


def test_cli_refuses_a_generator_of_another_dataset(monkeypatch, mnist_root, tmp_path):
    _saved_pair(tmp_path, generator_dataset="fashion-mnist")  # the same image shape: only the datasets tell
    with pytest.raises(SystemExit, match="trained on mnist, but the generator .* on fashion-mnist"):
        _tune_cli(monkeypatch, tmp_path, mnist_root)
    assert not (tmp_path / "rec").exists()
