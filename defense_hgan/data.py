"""Datasets as resident float tensors: images NCHW in [0, 1], labels int64.

MNIST-sized data fits in memory many times over, so every consumer (training,
projection, attacks) gets whole tensors and batches them itself instead of
paying for per-sample DataLoader work on a 2-core machine.
"""
from __future__ import annotations

import math
import os
import struct
import warnings
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


class MalformedDatasetError(ValueError):
    """A dataset file is present but unreadable (truncated, corrupt) or of the wrong shape."""


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


UNBALANCED_TV = 0.25


def label_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """How many images of each class a subset holds, for results files to record."""
    return torch.bincount(torch.as_tensor(labels).long().flatten(), minlength=num_classes).tolist()


def warn_if_unbalanced(subset_labels: torch.Tensor, all_labels: torch.Tensor, what: str) -> None:
    """Warn when a subset's classes are far from the full set's, so a score is not read as the whole set's.

    Far means a total variation distance above UNBALANCED_TV, or a class of the
    full set absent from a subset that has at least one image per class.
    """
    if len(subset_labels) == 0:
        return
    num_classes = int(max(torch.as_tensor(all_labels).max(), torch.as_tensor(subset_labels).max())) + 1
    subset = torch.tensor(label_counts(subset_labels, num_classes), dtype=torch.float64)
    full = torch.tensor(label_counts(all_labels, num_classes), dtype=torch.float64)
    distance = 0.5 * (subset / subset.sum() - full / full.sum()).abs().sum().item()
    missing = [c for c in range(num_classes) if full[c] > 0 and subset[c] == 0]
    if distance > UNBALANCED_TV or (missing and subset.sum() >= num_classes):
        warnings.warn(
            f"{what}: its labels are far from the full set's (total variation distance {distance:.2f}, "
            f"threshold {UNBALANCED_TV}; classes absent: {missing or 'none'}); label counts "
            f"{subset.long().tolist()} against {full.long().tolist()} in the full set, "
            f"so its scores describe these classes, not the whole set.",
            stacklevel=2,
        )


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
    split = "train" if train else "t10k"
    for part in ("images-idx3", "labels-idx1"):
        _check_idx(root / cls.__name__ / "raw" / f"{split}-{part}-ubyte")
    try:
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        raise _missing(name, [root / cls.__name__ / "raw"], download) from err
    return ds.data.unsqueeze(1), ds.targets


def _check_idx(path: Path) -> None:
    """Refuse an IDX file (the MNIST format) shorter or longer than its header says; an absent one is left to torchvision."""
    if not path.is_file():
        return
    data = path.read_bytes()
    dims = data[3] if len(data) >= 4 and data[:3] == b"\x00\x00\x08" else 0
    expected = None
    if 1 <= dims <= 3 and len(data) >= 4 * (dims + 1):
        expected = 4 * (dims + 1) + math.prod(struct.unpack(f">{dims}I", data[4 : 4 * (dims + 1)]))
    if expected != len(data):
        promised = "an unreadable header" if expected is None else f"a header promising {expected} bytes"
        raise MalformedDatasetError(
            f"{path} is truncated or corrupt: {len(data)} bytes with {promised}; "
            f"replace it (or delete it and pass --download)"
        )


def _load_cifar10(root: Path, train: bool, download: bool):
    folder = root / "cifar10" / ("train" if train else "test")
    if folder.is_dir():
        return _read_image_folder(folder, DATASETS["cifar10"].image_shape)
    from torchvision import datasets

    try:
        ds = datasets.CIFAR10(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        raise _missing("cifar10", [folder, root / "cifar-10-batches-py"], download) from err
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)


def _read_image_folder(folder: Path, image_shape: tuple[int, int, int]):
    """An ImageFolder tree (class folders sorted = label order), classes interleaved.

    Image k of every class comes before image k + 1 of any (k: its rank among
    its class's sorted file names), so every prefix of the split is balanced:
    the "first n test images" of an evaluation hold every class, not one.
    Files that are not images (a stray .DS_Store) are skipped with a warning.
    """
    import numpy as np

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{folder} has no class folders; expected {folder}/<class>/*.jpg")
    ranked = []  # (rank within its class, label, pixels HWC)
    for label, cls in enumerate(classes):
        paths = sorted(path for path in (folder / cls).iterdir() if path.is_file())
        pixels = [image for image in (_read_image(path, image_shape) for path in paths) if image is not None]
        ranked += [(rank, label, image) for rank, image in enumerate(pixels)]
    if not ranked:
        raise DatasetNotFoundError(f"{folder} has no images; expected {folder}/<class>/*.jpg")
    ranked.sort(key=lambda item: item[:2])
    images = np.stack([image for _, _, image in ranked])
    labels = torch.tensor([label for _, label, _ in ranked])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _read_image(path: Path, image_shape: tuple[int, int, int]):
    """One image file as HWC uint8 RGB; None (with a warning) for a file that is no image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    _, height, width = image_shape
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise MalformedDatasetError(
                    f"{path} is {image.size[0]}x{image.size[1]}; every image of this dataset must be "
                    f"{width}x{height}: remove it or resize it"
                )
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        warnings.warn(f"skipped {path}: not an image file")
        return None
    except OSError as err:
        raise MalformedDatasetError(f"{path} is truncated or corrupt ({err}); replace it") from err
