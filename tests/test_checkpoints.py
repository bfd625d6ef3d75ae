import pickle

import pytest
import torch

from classifiers import build_classifier
from defense_hgan import CheckpointError, load_classifier
from defense_hgan.checkpoints import load_checkpoint, save_checkpoint
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
