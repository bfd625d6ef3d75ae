"""Shared fixtures: tiny synthetic data roots in the layouts the library reads, and the real data root."""
from __future__ import annotations

import importlib
import os
import struct
import subprocess
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch):
    """Import a script of benchmarks/ by name (``benchmark("bpda_cost")``), as it imports its neighbours."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an uncompressed IDX file (the MNIST format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def make_mnist_root(root: Path, folder: str = "MNIST", n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=gen))
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte", torch.arange(n) % 10)
    return root


def make_cifar_folder_root(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for split in ("train", "test"):
        for cls in classes:
            (root / "cifar10" / split / cls).mkdir(parents=True)
            for i in range(per_class):
                image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen)
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "cifar10" / split / cls / f"{i:04d}.png")
    return root


@pytest.fixture
def mnist_root(tmp_path):
    return make_mnist_root(tmp_path)


@pytest.fixture
def cifar_root(tmp_path):
    return make_cifar_folder_root(tmp_path)


@pytest.fixture(scope="session")
def real_data_root(tmp_path_factory):
    """A torchvision-ready root of the real datasets: $DEFENSE_HGAN_DATA, else one made from ../shared/data."""
    env = os.environ.get("DEFENSE_HGAN_DATA")
    if env and (Path(env) / "MNIST" / "raw").is_dir():
        return Path(env)
    if not (SHARED_DATA / "prepare").exists():
        pytest.skip(f"real data absent: no $DEFENSE_HGAN_DATA and no {SHARED_DATA}/prepare")
    root = tmp_path_factory.mktemp("real-data")
    subprocess.run([str(SHARED_DATA / "prepare"), str(root)], check=True, capture_output=True)
    return root
