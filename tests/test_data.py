import pytest
import torch

from defense_hgan.data import (
    DATA_ROOT_ENV, DatasetNotFoundError, MalformedDatasetError, label_counts, load_dataset, resolve_data_root,
    warn_if_unbalanced,
)
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


def test_cifar_image_folder_interleaves_classes_so_every_prefix_is_balanced(cifar_root):
    images, labels = load_dataset("cifar10", train=False, root=cifar_root)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == list(range(10)) * 2


def test_cifar_pixels_survive_the_round_trip_in_interleaved_order(cifar_root):
    import numpy as np
    from PIL import Image

    images, _ = load_dataset("cifar10", train=True, root=cifar_root)
    for index, path in ((0, "airplane/0000.png"), (1, "automobile/0000.png"), (10, "airplane/0001.png")):
        expected = torch.from_numpy(np.array(Image.open(cifar_root / "cifar10" / "train" / path))).permute(2, 0, 1)
        assert torch.equal((images[index] * 255).round().to(torch.uint8), expected), path


def test_stray_non_image_file_in_a_cifar_class_folder_is_skipped_with_a_warning(cifar_root):
    stray = cifar_root / "cifar10" / "test" / "bird" / ".DS_Store"
    stray.write_bytes(b"\x00\x00\x00\x01Bud1")
    with pytest.warns(UserWarning, match=r"skipped .*\.DS_Store: not an image"):
        _, labels = load_dataset("cifar10", train=False, root=cifar_root)
    assert labels.tolist() == list(range(10)) * 2


def test_cifar_image_of_the_wrong_size_is_refused_naming_the_file_and_the_size(cifar_root):
    from PIL import Image

    big = cifar_root / "cifar10" / "test" / "cat" / "0002.jpg"
    Image.new("RGB", (64, 64)).save(big)
    with pytest.raises(MalformedDatasetError, match=r"0002\.jpg is 64x64; .* must be 32x32"):
        load_dataset("cifar10", train=False, root=cifar_root)


@pytest.mark.parametrize("keep", [0, 10, 100])
def test_truncated_mnist_file_is_called_truncated_not_missing(mnist_root, keep):
    path = mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(MalformedDatasetError, match="truncated or corrupt") as err:
        load_dataset("mnist", train=False, root=mnist_root)
    assert str(path) in str(err.value) and "not found" not in str(err.value)


def test_label_counts_count_every_class_including_absent_ones():
    assert label_counts(torch.tensor([0, 2, 2, 4]), 6) == [1, 0, 2, 0, 1, 0]


def test_a_one_class_subset_warns_with_its_label_counts():
    all_labels = torch.arange(1000) % 10
    with pytest.warns(UserWarning, match=r"first 200 test images: .*total variation distance 0\.90.*\[200, 0,"):
        warn_if_unbalanced(torch.zeros(200, dtype=torch.long), all_labels, "first 200 test images")


def test_a_subset_missing_a_class_warns_even_when_close_in_distance():
    all_labels = torch.arange(1000) % 10
    with pytest.warns(UserWarning, match=r"classes absent: \[9\]"):
        warn_if_unbalanced(torch.arange(90) % 9, all_labels, "first 90")


def test_a_balanced_subset_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_unbalanced(torch.arange(30) % 10, torch.arange(1000) % 10, "first 30")
        warn_if_unbalanced(torch.tensor([], dtype=torch.long), torch.arange(1000) % 10, "nothing")


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
