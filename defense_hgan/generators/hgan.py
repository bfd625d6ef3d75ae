"""HGAN (Iranmanesh & Nasrabadi) and its AutoGAN ablation: a DCGAN taught by a PixelCNN++ teacher.

Algorithm 1, one step, with the DCGAN networks and update (``dcgan.py``):

    x_xi = p_xi(x)                  the teacher's teacher-forced mean image, one parallel pass (line 3)
    z ~ N(0, I), x_hat = G(z)       (lines 4-5)
    L_D = -log D(x_xi) - log D(x) - 2 log(1 - D(x_hat))      (lines 6-12, as a loss to minimise)
    L_G = -2 log D(x_hat)           (lines 13-14: G fools D on both terms, non-saturating)
    L_xi = teacher loss on x        (lines 15-16)

Algorithm 1 forwards G(z) twice (lines 5 and 8) with the one z of line 4, so
both fake terms score the same image: G runs once and its term counts twice,
which is the same loss at half the generator cost. Line 9 reads D(x_xi) under
the comment "real data"; Section 3 says the second real input is x, so it is
D(x) here. x_xi is detached for D and G: the teacher learns only from its own
loss. AutoGAN (Section 4.5, Fig. 3) drops the real-data term: x_xi is the
only real input, L_D = -log D(x_xi) - log(1 - D(x_hat)), L_G = -log D(x_hat).

The teacher loss. The paper trains p_xi with |x - p_xi(x)|, an L1 on the
predicted mean. That term never reaches the mixture's scales, and only reaches
its weights through the mean, so the teacher it trains is not a density model.
The default here is the teacher's likelihood (discretized logistic mixture
NLL, reported in bits per dim), which fits means, weights and scales, and whose
mean image is then a proper teacher-forced prediction; ``teacher_loss="l1"``
is the paper's term, for comparison. The teacher uses PixelCNN++'s own Adam
(1e-3, betas (0.95, 0.9995)), not the GAN's.
"""
from __future__ import annotations

import torch

from defense_hgan.generators.dcgan import adversarial_step, update
from defense_hgan.generators.pixelcnn import bits_per_dim, discretized_logistic_mixture_nll, mixture_mean

TEACHER_LOSSES = ("nll", "l1")
TEACHER_LR = 1e-3
TEACHER_BETAS = (0.95, 0.9995)


def teacher_output(teacher, x: torch.Tensor, loss: str = "nll") -> tuple[torch.Tensor, torch.Tensor]:
    """(x_xi detached (N, C, H, W) in [0, 1], the teacher's loss) from one forward pass of the teacher."""
    params = teacher(x)
    x_xi = mixture_mean(params, x)
    if loss == "nll":
        return x_xi.detach(), bits_per_dim(discretized_logistic_mixture_nll(x, params), teacher.image_shape).mean()
    return x_xi.detach(), (x - x_xi).abs().mean()


def _taught_step(networks, optimizers, next_batch, teacher_loss: str, real_data: bool,
                 real_label: float) -> dict[str, torch.Tensor]:
    x = next_batch()
    x_xi, loss = teacher_output(networks["teacher"], x, teacher_loss)
    losses = adversarial_step(networks, optimizers, [x_xi, x] if real_data else [x_xi], real_label)
    update(optimizers["teacher"], loss)
    return {**losses, "teacher": loss.detach()}


def frozen_teacher_step(networks, optimizers, next_batch, next_teacher_batch, real_data: bool,
                        real_label: float = 1.0) -> dict[str, torch.Tensor]:
    """Algorithm 1 with a pretrained, frozen teacher (``defense_hgan.frozen_teacher``): x_xi is drawn, not computed.

    D's two real terms need not score the same images, so x_xi is a batch of
    the teacher's precomputed mean images drawn independently of x.
    """
    x = next_batch()
    x_xi = next_teacher_batch(len(x))
    return adversarial_step(networks, optimizers, [x_xi, x] if real_data else [x_xi], real_label)


def train_step(networks, optimizers, next_batch, teacher_loss: str = "nll",
               real_label: float = 1.0) -> dict[str, torch.Tensor]:
    """HGAN: the discriminator sees x_xi and x as real, G(z) as fake in one term for each."""
    return _taught_step(networks, optimizers, next_batch, teacher_loss, real_data=True, real_label=real_label)


def autogan_train_step(networks, optimizers, next_batch, teacher_loss: str = "nll",
                       real_label: float = 1.0) -> dict[str, torch.Tensor]:
    """AutoGAN: x_xi is the only real input; the data reaches G only through the teacher."""
    return _taught_step(networks, optimizers, next_batch, teacher_loss, real_data=False, real_label=real_label)
