import hashlib
import os
import pickle
import signal
import stat
import subprocess
import sys

import pytest
import torch

from classifiers import build_classifier
from defense_hgan import CheckpointError, load_classifier
from defense_hgan.atomic import atomic_write
from defense_hgan.checkpoints import (
    check_trained_on, checkpoint_difference, file_sha256, load_checkpoint, save_checkpoint,
)
from defense_hgan.classifier_io import save_classifier


def _saved_classifier(tmp_path, dataset="mnist", arch="a"):
    torch.manual_seed(0)
    model = build_classifier(dataset, arch).eval()
    path = tmp_path / "classifier.pt"
    save_classifier(model, path, {"dataset": dataset, "arch": arch, "options": {}})
    return model, path


@pytest.mark.parametrize("dataset,arch", [("mnist", "a"), ("mnist", "d"), ("cifar10", "fast")])
def test_classifier_round_trip_gives_identical_logits(tmp_path, dataset, arch):
    model, path = _saved_classifier(tmp_path, dataset, arch)
    loaded = load_classifier(path, device="cpu")
    x = torch.rand(4, *((1, 28, 28) if dataset == "mnist" else (3, 32, 32)))
    assert not loaded.training
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_missing_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _, path = _saved_classifier(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_classifier(path)


def test_wrong_kind_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "g.pt", "generator", {"model": "dcgan"}, {"state_dict": {}})
    with pytest.raises(CheckpointError, match="'generator' checkpoint, expected a 'classifier'"):
        load_classifier(path)


def test_foreign_torch_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a defense-hgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt", "classifier")


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_arbitrary_pickled_code_is_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "defense-hgan", "kind": "classifier", "payload": _Exploit()}, f, protocol=2)
    with pytest.raises(CheckpointError):
        load_classifier(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_config_that_cannot_rebuild_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", "classifier", {"dataset": "mnist", "arch": "z"}, {"state_dict": {}})
    with pytest.raises(CheckpointError, match="could not be rebuilt"):
        load_classifier(path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    _saved_classifier(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.pt"]


def test_an_empty_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\).*expected a classifier file"):
        load_classifier(tmp_path / "empty.pt")


def test_a_loaded_model_carries_its_dataset(tmp_path):
    _, path = _saved_classifier(tmp_path, "cifar10", "fast")
    assert load_classifier(path).dataset == "cifar10"


def test_models_of_other_datasets_are_refused_naming_both(tmp_path):
    _, path = _saved_classifier(tmp_path, "cifar10", "fast")
    cifar, plain = load_classifier(path), torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=f"the classifier {path} was trained on cifar10, but the dataset is mnist"):
        check_trained_on("mnist", classifier=path)
    with pytest.raises(ValueError, match="the classifier was trained on cifar10, but the dataset is mnist"):
        check_trained_on("mnist", classifier=cifar)
    mnist_generator = torch.nn.Linear(2, 2)
    mnist_generator.dataset = "mnist"  # as load_generator marks a generator trained on MNIST
    with pytest.raises(ValueError, match="the classifier was trained on cifar10, but the generator on mnist"):
        check_trained_on(classifier=cifar, generator=mnist_generator)
    check_trained_on("cifar10", classifier=cifar, generator=plain)  # built in memory: no dataset to check
    check_trained_on("mnist", generator=None)


def test_checkpoints_are_the_same_by_content_whatever_the_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "g.pt").write_bytes(b"first")
    first = file_sha256("zoo/g.pt")
    assert first == hashlib.sha256(b"first").hexdigest() and file_sha256("absent.pt") is None
    assert checkpoint_difference("generator", "zoo/g.pt", first, "./zoo/g.pt", file_sha256("./zoo/g.pt")) is None
    assert checkpoint_difference("generator", "zoo/g.pt", first, str(tmp_path / "copy.pt"), first) is None
    assert checkpoint_difference("generator", "zoo/g.pt", None, "./zoo/g.pt", None) is None  # names, no hashes
    (tmp_path / "zoo" / "g.pt").write_bytes(b"second")
    assert "that file has changed since: it was replaced" in checkpoint_difference(
        "generator", "zoo/g.pt", first, "./zoo/g.pt", file_sha256("zoo/g.pt"))
    assert "recorded by path only" in checkpoint_difference("generator", "zoo/g.pt", None, "zoo/g.pt", first)


def test_a_write_killed_midway_leaves_a_temp_file_the_next_write_removes(tmp_path):
    target = tmp_path / "generator.pt"
    killed = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from defense_hgan.atomic import atomic_write\n"
        "with atomic_write(sys.argv[1], 'wb') as f:\n"
        "    f.write(b'half a checkpoint'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(target)])
    assert killed.wait() == -signal.SIGKILL
    [stale] = tmp_path.glob("*.tmp")
    assert stale.name.startswith(f"generator.pt.{killed.pid}.") and not target.exists()
    _saved_classifier(tmp_path)  # another file's write leaves it alone
    assert stale.exists()
    save_checkpoint(target, "generator", {}, {})
    assert not list(tmp_path.glob("*.tmp")) and load_checkpoint(target, "generator")["kind"] == "generator"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_written_with_the_umask_as_open_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _, path = _saved_classifier(tmp_path)
        with atomic_write(tmp_path / "results.json") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == mode


def test_rewriting_a_file_keeps_its_permissions(tmp_path):
    _, path = _saved_classifier(tmp_path)
    path.chmod(0o640)
    _saved_classifier(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
