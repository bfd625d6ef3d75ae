"""Smoke tests on the real datasets in ../shared/data (skipped, with the reason, when absent)."""
from dataclasses import replace

import pytest
import torch

from classifiers import build_classifier
from classifiers.training import MNIST_RECIPE, train_classifier
from defense_hgan.data import load_dataset

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name,n_test,shape", [
    ("mnist", 10_000, (1, 28, 28)), ("fashion-mnist", 10_000, (1, 28, 28)), ("cifar10", 10_000, (3, 32, 32)),
])
def test_real_test_splits_load_complete_and_balanced(real_data_root, name, n_test, shape):
    images, labels = load_dataset(name, train=False, root=real_data_root)
    assert images.shape == (n_test, *shape)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.bincount().min() > 850  # every class present in realistic proportion


def test_model_d_learns_real_mnist_in_one_short_epoch(real_data_root):
    torch.manual_seed(0)
    images, labels = load_dataset("mnist", train=True, root=real_data_root)
    test = load_dataset("mnist", train=False, root=real_data_root)
    model = build_classifier("mnist", "d")
    metrics = train_classifier(model, (images[:10_000], labels[:10_000]), (test[0][:2000], test[1][:2000]),
                               epochs=1, recipe=replace(MNIST_RECIPE, batch_size=64), device="cpu", progress=False)
    assert metrics["test_accuracy"] > 0.85
