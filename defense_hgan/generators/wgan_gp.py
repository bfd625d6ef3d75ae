"""WGAN-GP (Gulrajani et al. 2017) with the Defense-GAN generator: the baseline the defense was built on.

Generator (Samangouei et al. 2018, MNIST): z in R^128 -> FC to 4x4x256 ->
5x5 transposed convs with stride 2, BatchNorm + ReLU, cropping 8x8 to 7x7 so
two more doublings land on 28x28 -> sigmoid. For 3x32x32 the same net doubles
4 -> 8 -> 16 -> 32 with no crop. The critic mirrors it with 5x5 strided convs
and LeakyReLU(0.2) and no BatchNorm (the gradient penalty is per sample).
Training: 5 critic steps, each on a fresh real batch, per generator step;
penalty weight 10; Adam 1e-4, betas (0.5, 0.9).
"""
from __future__ import annotations

import torch
from torch import nn

from defense_hgan.generators.dcgan import update, weights_init

LR = 1e-4
BETAS = (0.5, 0.9)
CRITIC_STEPS = 5
GP_WEIGHT = 10.0


def _up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)  # side x2 ('SAME')


class Generator(nn.Module):
    """z (N, latent_dim) ~ N(0, I) -> images (N, C, H, W) in [0, 1], for 1x28x28 or 3x32x32."""

    def __init__(self, image_shape=(1, 28, 28), latent_dim: int = 128, width: int = 64):
        super().__init__()
        channels, side, _ = image_shape
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.width = width
        self.crop = 7 if side == 28 else 8
        self.fc = nn.Sequential(nn.Linear(latent_dim, 4 * 4 * 4 * width), nn.BatchNorm1d(4 * 4 * 4 * width), nn.ReLU(True))
        self.up1 = nn.Sequential(_up(4 * width, 2 * width), nn.BatchNorm2d(2 * width), nn.ReLU(True))
        self.up2 = nn.Sequential(_up(2 * width, width), nn.BatchNorm2d(width), nn.ReLU(True), _up(width, channels))
        self.apply(weights_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, 4 * self.width, 4, 4)
        h = self.up1(h)[:, :, :self.crop, :self.crop]  # (N, 2w, 7, 7) for 28x28, (N, 2w, 8, 8) for 32x32
        return torch.sigmoid(self.up2(h))  # (N, C, 28|32, 28|32)


class LeakyReLU(nn.LeakyReLU):
    """nn.LeakyReLU computed as x times its slope mask: the same values and gradients, and a cheaper penalty.

    The penalty's double backward differentiates the critic's input gradient,
    which depends on the activations only through this piecewise-constant mask.
    nn.LeakyReLU's double backward still returns an all-zero gradient for its
    input (derivatives.yaml: ``self: zeros_like(grad)``), and autograd carries
    those zeros back through the whole forward pass of the mixed images, three
    conv backwards per critic step, to add nothing. A mask made by a comparison
    has no gradient, so that pass is never made. In fp32 and fp64 the values and
    every gradient, the penalty's included, are nn.LeakyReLU's bit for bit.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.where(x > 0, x.new_tensor(1.0), x.new_tensor(self.negative_slope))


class Critic(nn.Module):
    """Images (N, C, H, W) in [0, 1] -> unbounded scores (N,)."""

    def __init__(self, image_shape=(1, 28, 28), width: int = 64):
        super().__init__()
        channels = image_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 5, 2, 2), LeakyReLU(0.2),  # (N, w, 14|16, 14|16)
            nn.Conv2d(width, 2 * width, 5, 2, 2), LeakyReLU(0.2),  # (N, 2w, 7|8, 7|8)
            nn.Conv2d(2 * width, 4 * width, 5, 2, 2), LeakyReLU(0.2),  # (N, 4w, 4, 4)
            nn.Flatten(),
            nn.Linear(4 * 4 * 4 * width, 1),
        )
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x)|| - 1)^2] at random points on the lines between real and fake images."""
    eps = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_step(networks, optimizers, next_batch, penalty=gradient_penalty) -> dict[str, torch.Tensor]:
    """CRITIC_STEPS critic updates on fresh real batches, then one generator update (the critic is networks["discriminator"]).

    ``penalty(critic, real, fake)`` is Gulrajani et al.'s ``gradient_penalty``; benchmarks/generator_step.py
    times cheaper departures from it through this argument.
    """
    generator, critic = networks["generator"], networks["discriminator"]
    for _ in range(CRITIC_STEPS):
        real = next_batch()
        with torch.no_grad():
            fake = generator(torch.randn(len(real), generator.latent_dim, device=real.device))
        wasserstein = critic(fake).mean() - critic(real).mean()
        penalty_term = penalty(critic, real, fake)
        update(optimizers["discriminator"], wasserstein + GP_WEIGHT * penalty_term)
    fake = generator(torch.randn(len(real), generator.latent_dim, device=real.device))
    g_loss = -critic(fake).mean()
    update(optimizers["generator"], g_loss)
    return {"critic": wasserstein.detach(), "gp": penalty_term.detach(), "g": g_loss.detach()}
