import pytest
import torch

from defense_hgan.data import DATA_ROOT_ENV, DatasetNotFoundError, load_dataset, resolve_data_root
from tests.conftest import make_mnist_root


def test_mnist_idx_root_loads_as_float_nchw_in_unit_range(mnist_root):
    images, labels = load_dataset("mnist", train=True, root=mnist_root)
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == torch.int64 and labels[:10].tolist() == list(range(10))
    test_images, _ = load_dataset("mnist", train=False, root=mnist_root)
    assert test_images.shape == (32, 1, 28, 28)


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    make_mnist_root(tmp_path, folder="FashionMNIST", n_train=20)
    images, _ = load_dataset("fashion-mnist", train=True, root=tmp_path)
    assert images.shape == (20, 1, 28, 28)


def test_cifar_image_folder_root_gives_sorted_class_labels(cifar_root):
    images, labels = load_dataset("cifar10", train=False, root=cifar_root)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_cifar_pixels_survive_the_round_trip(cifar_root):
    import numpy as np
    from PIL import Image

    images, _ = load_dataset("cifar10", train=True, root=cifar_root)
    first = np.array(Image.open(cifar_root / "cifar10" / "train" / "airplane" / "0000.png"))
    assert torch.equal((images[0] * 255).round().to(torch.uint8), torch.from_numpy(first).permute(2, 0, 1))


def test_missing_dataset_says_where_it_looked_and_how_to_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "--data-root" in message and DATA_ROOT_ENV in message


def test_missing_cifar_names_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar10" / "train") in str(err.value)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("svhn")


def test_data_root_prefers_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv(DATA_ROOT_ENV)
    assert resolve_data_root().parts[-3:] == (".cache", "defense_hgan", "data")
