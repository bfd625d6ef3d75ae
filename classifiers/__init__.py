"""The models being defended: Defense-GAN's MNIST classifiers A-D and a fast CIFAR-10 net.

Every classifier takes images in [0, 1], NCHW, and returns logits.
"""
from __future__ import annotations

from torch import nn

from classifiers.cifar_net import CifarNet
from classifiers.mnist_models import model_a, model_b, model_c, model_d

_MNIST_ARCHS = {"a": model_a, "b": model_b, "c": model_c, "d": model_d}
ARCHITECTURES = {
    "mnist": sorted(_MNIST_ARCHS),
    "fashion-mnist": sorted(_MNIST_ARCHS),
    "cifar10": ["fast"],
}
DEFAULT_ARCH = {"mnist": "a", "fashion-mnist": "a", "cifar10": "fast"}


def build_classifier(dataset: str, arch: str | None = None, num_classes: int = 10, **options) -> nn.Module:
    """A fresh classifier for ``dataset``; ``arch`` defaults to the dataset's usual one."""
    if dataset not in ARCHITECTURES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(ARCHITECTURES)}")
    arch = DEFAULT_ARCH[dataset] if arch is None else str(arch).lower()
    if arch not in ARCHITECTURES[dataset]:
        raise ValueError(f"unknown architecture {arch!r} for {dataset}; expected one of {ARCHITECTURES[dataset]}")
    if arch == "fast":
        return CifarNet(num_classes=num_classes, **options)
    if options:
        raise ValueError(f"architecture {arch!r} takes no options, got {sorted(options)}")
    return _MNIST_ARCHS[arch](num_classes)
