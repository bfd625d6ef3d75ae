"""DCGAN (Radford et al. 2016): generator, discriminator and one training step.

The architecture is the paper's, scaled to small images: transposed convs that
double the side (4 -> 8 -> 16 -> 32, or 4 -> 7 -> 14 -> 28 with a 3x3 kernel
for the first one), BatchNorm + ReLU in the generator, strided convs with
BatchNorm + LeakyReLU(0.2) in the discriminator, weights N(0, 0.02), Adam
2e-4 with beta1 0.5, binary cross-entropy with the non-saturating generator
loss -log D(G(z)). HGAN and AutoGAN reuse these networks and this update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LR = 2e-4
BETAS = (0.5, 0.999)


def weights_init(module: nn.Module) -> None:
    """DCGAN's initialisation, shared by every model here: conv/linear N(0, 0.02), BatchNorm scale N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _up(c_in: int, c_out: int, kernel: int = 4) -> list[nn.Module]:
    """Double the side (a 3x3 kernel maps 4 -> 7 for 28x28 images), then BatchNorm + ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, kernel, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class Generator(nn.Module):
    """z (N, latent_dim) ~ N(0, I) -> images (N, C, H, W) in [0, 1], for 1x28x28 or 3x32x32."""

    def __init__(self, image_shape=(1, 28, 28), latent_dim: int = 100, width: int = 64):
        super().__init__()
        channels, side, _ = image_shape
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 4 * width, 4, 1, 0, bias=False),  # (N, 4w, 4, 4)
            nn.BatchNorm2d(4 * width),
            nn.ReLU(True),
            *_up(4 * width, 2 * width, kernel=3 if side == 28 else 4),  # (N, 2w, 7|8, 7|8)
            *_up(2 * width, width),  # (N, w, 14|16, 14|16)
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # (N, C, 28|32, 28|32)
        )
        self.apply(weights_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # DCGAN's tanh output, moved from [-1, 1] to the library's [0, 1]
        return (torch.tanh(self.net(z[:, :, None, None])) + 1) / 2


def _down(c_in: int, c_out: int, kernel: int = 4) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]


class Discriminator(nn.Module):
    """Images (N, C, H, W) in [0, 1] -> real/fake logits (N,)."""

    def __init__(self, image_shape=(1, 28, 28), width: int = 64):
        super().__init__()
        channels, side, _ = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),  # (N, w, 14|16, 14|16)
            nn.LeakyReLU(0.2, True),
            *_down(width, 2 * width),  # (N, 2w, 7|8, 7|8)
            *_down(2 * width, 4 * width, kernel=3 if side == 28 else 4),  # (N, 4w, 4, 4)
            nn.Conv2d(4 * width, 1, 4, 1, 0),  # (N, 1, 1, 1)
        )
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).flatten()  # DCGAN works on [-1, 1]


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def adversarial_step(networks, optimizers, reals: list[torch.Tensor],
                     real_label: float = 1.0) -> dict[str, torch.Tensor]:
    """One D update then one G update, with one real term per batch in ``reals`` and a fake term for each.

    Every fake term scores the same G(z): one z is drawn per step, so the
    fake term of each real input is the same number and G(z) is computed once.
    ``real_label`` below 1 is one-sided label smoothing (Salimans et al. 2016, 0.9 there): D's targets for real
    images only, so that D cannot grow arbitrarily sure of them; G's target stays 1.
    """
    generator, discriminator = networks["generator"], networks["discriminator"]
    z = torch.randn(len(reals[0]), generator.latent_dim, device=reals[0].device)
    fake = generator(z)
    d_loss = (sum(_bce(discriminator(x), real_label) for x in reals)
              + len(reals) * _bce(discriminator(fake.detach()), 0.0))
    update(optimizers["discriminator"], d_loss)
    g_loss = len(reals) * _bce(discriminator(fake), 1.0)  # non-saturating: -log D(G(z)) per term
    update(optimizers["generator"], g_loss)
    return {"d": d_loss.detach(), "g": g_loss.detach()}


def train_step(networks, optimizers, next_batch, real_label: float = 1.0) -> dict[str, torch.Tensor]:
    """DCGAN: the real batch is the only real input."""
    return adversarial_step(networks, optimizers, [next_batch()], real_label)
