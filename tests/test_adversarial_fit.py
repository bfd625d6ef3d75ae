"""benchmarks/adversarial_fit.py's grid of the defense's mistakes."""

import pytest
import torch
from PIL import Image


@pytest.fixture
def adversarial_fit(benchmark):
    return benchmark("adversarial_fit")


def test_the_grid_has_a_row_per_mistake_and_names_its_labels(adversarial_fit, tmp_path):
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels, fooled_to, defended = torch.tensor([1, 2, 3, 4]), torch.tensor([7, 2, 5, 6]), torch.tensor([7, 2, 3, 9])
    lines = adversarial_fit.wrong_grid(tmp_path / "grid.png", images, images, images, labels, fooled_to, defended)
    assert "0: 1 / 7 / 7, 3: 4 / 6 / 9" in lines
    width, height = Image.open(tmp_path / "grid.png").size
    assert (width, height) == (3 * 10 + 2, 2 * 10 + 2)  # 3 columns, 2 rows of 8x8 images with 2-pixel padding


def test_no_mistakes_no_grid(adversarial_fit, tmp_path):
    labels = torch.tensor([1, 2])
    lines = adversarial_fit.wrong_grid(tmp_path / "grid.png", torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8),
                                       torch.rand(2, 1, 8, 8), labels, labels, labels)
    assert lines[0].startswith("The defense gets every image right") and not (tmp_path / "grid.png").exists()
