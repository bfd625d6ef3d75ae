"""A small, fast CIFAR-10 network in the spirit of airbench (Jordan 2024).

Why this shape: on a 2-core CPU every FLOP counts, so the net is three
conv-pool-norm groups with a frozen 2x2 patch-whitening stem (initialised from
the training data's patch covariance, so the first layer needs no training)
and identity-initialised 3x3 convs (an implicit residual without the adds).
Inputs are [0, 1] NCHW; the network normalises them itself. In eval mode it
averages the logits of the image and its mirror (test-time flip augmentation):
a fixed, differentiable part of the classifier that attacks see whole.
"""
from __future__ import annotations

import torch
from torch import nn

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def _norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a fixed unit scale: only the shift is learned."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            _conv3x3(c_in, c_out), nn.MaxPool2d(2), _norm(c_out), nn.GELU(),
            _conv3x3(c_out, c_out), _norm(c_out), nn.GELU(),
        )


class CifarNet(nn.Module):
    """Whitening stem, three conv groups, global max pool, linear head."""

    def __init__(self, widths: tuple[int, int, int] = (32, 128, 128), num_classes: int = 10,
                 logit_scale: float = 1 / 9):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(
            ConvGroup(24, widths[0]), ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2])
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; in eval mode the average over the image and its mirror (measured: +1.0 point on CIFAR-10)."""
        if self.training:
            return self._logits(x)
        return (self._logits(x) + self._logits(x.flip(-1))) / 2

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.whiten((x - self.mean) / self.std))
        x = self.groups(x).amax(dim=(2, 3))
        return self.head(x) * self.logit_scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of ``images`` ([0, 1] NCHW): W = +-V / sqrt(lambda + eps)."""
        x = (images.to(self.mean.device) - self.mean) / self.std
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))
        self.whiten.bias.zero_()
