"""The MNIST / Fashion-MNIST classifiers A-D that Defense-GAN evaluated.

Layer for layer as Defense-GAN's model_a..model_d (after Tramer et al. 2017),
written for 1x28x28 inputs in [0, 1]; TensorFlow's SAME / VALID paddings are
reproduced with explicit padding so the feature map sizes match.
"""
from __future__ import annotations

from torch import nn


def model_a(num_classes: int = 10) -> nn.Sequential:
    """conv64 5x5, conv64 5x5 /2, dropout .25, fc128, dropout .5, fc."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 5, padding=2), nn.ReLU(),
        nn.Conv2d(64, 64, 5, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.25),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


def model_b(num_classes: int = 10) -> nn.Sequential:
    """dropout .2, conv64 8x8 /2, conv128 6x6 /2, conv128 5x5, dropout .5, fc."""
    return nn.Sequential(
        nn.Dropout(0.2),
        nn.ZeroPad2d((3, 3, 3, 3)), nn.Conv2d(1, 64, 8, stride=2), nn.ReLU(),
        nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(),
        nn.Conv2d(128, 128, 5), nn.ReLU(),
        nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(128, num_classes),
    )


def model_c(num_classes: int = 10) -> nn.Sequential:
    """conv128 3x3, conv64 5x5 /2, dropout .25, fc128, dropout .5, fc."""
    return nn.Sequential(
        nn.Conv2d(1, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 64, 5, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.25),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


def model_d(num_classes: int = 10) -> nn.Sequential:
    """fc200, dropout .5, fc200, fc: the fully connected one."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 200), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, num_classes),
    )
