"""Datasets as resident float tensors: images NCHW in [0, 1], labels int64.

MNIST-sized data fits in memory many times over, so every consumer (training,
projection, attacks) gets whole tensors and batches them itself instead of
paying for per-sample DataLoader work on a 2-core machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_ROOT_ENV = "DEFENSE_HGAN_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple[int, int, int]
    num_classes: int = 10


DATASETS = {
    "mnist": DatasetInfo("mnist", (1, 28, 28)),
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28)),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32)),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not under the data root and could not be downloaded."""


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """--data-root if given, else $DEFENSE_HGAN_DATA, else a cache folder in the home."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    return Path.home() / ".cache" / "defense_hgan" / "data"


def load_dataset(
    name: str, train: bool = True, root: str | os.PathLike | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images float32 NCHW in [0, 1], labels int64) for one split."""
    info = dataset_info(name)
    data_root = resolve_data_root(root)
    if name == "cifar10":
        images, labels = _load_cifar10(data_root, train, download)
    else:
        images, labels = _load_mnist_like(name, data_root, train, download)
    images = images.float().div_(255.0)
    assert images.shape[1:] == info.image_shape, images.shape
    return images, labels.long()


def _missing(name: str, looked_in: list[Path], download: bool) -> DatasetNotFoundError:
    places = "\n".join(f"  - {p}" for p in looked_in)
    tried = "The download failed (no network?). " if download else ""
    return DatasetNotFoundError(
        f"Dataset {name!r} was not found. Looked in:\n{places}\n{tried}"
        f"Fix: pass --data-root DIR (or set {DATA_ROOT_ENV}=DIR) to a folder laid out for "
        f"torchvision (MNIST/raw, FashionMNIST/raw, cifar10/{{train,test}}/<class>/*.jpg or "
        f"cifar-10-batches-py), or allow the download with --download."
    )


def _load_mnist_like(name: str, root: Path, train: bool, download: bool):
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        raise _missing(name, [root / cls.__name__ / "raw"], download) from err
    return ds.data.unsqueeze(1), ds.targets


def _load_cifar10(root: Path, train: bool, download: bool):
    folder = root / "cifar10" / ("train" if train else "test")
    if folder.is_dir():
        return _read_image_folder(folder)
    from torchvision import datasets

    try:
        ds = datasets.CIFAR10(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        raise _missing("cifar10", [folder, root / "cifar-10-batches-py"], download) from err
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)


def _read_image_folder(folder: Path):
    """An ImageFolder tree (class folders sorted = label order) decoded in one pass."""
    import numpy as np
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{folder} has no class folders; expected {folder}/<class>/*.jpg")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)
