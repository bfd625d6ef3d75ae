"""Generators behind one interface, and what trains each of them.

Every generator has ``latent_dim`` and ``image_shape`` and maps
z (N, latent_dim) ~ N(0, I) to images (N, C, H, W) in [0, 1] of the dataset's
shape (1x28x28 for MNIST / Fashion-MNIST, 3x32x32 for CIFAR-10).

| model   | generator                   | discriminator                        | real inputs of D | teacher    |
|---------|-----------------------------|--------------------------------------|------------------|------------|
| dcgan   | DCGAN, z in R^100           | DCGAN                                | x                | -          |
| wgan-gp | Defense-GAN's, z in R^128   | WGAN-GP critic                       | x                | -          |
| hgan    | DCGAN                       | DCGAN                                | x_xi and x       | PixelCNN++ |
| autogan | DCGAN                       | DCGAN                                | x_xi             | PixelCNN++ |
| s-argan | ARGAN, z in R^100           | ARGAN: encoder + LSTM over positions | x                | -          |
| c-argan | ARGAN                       | ARGAN: encoder + LSTM over channels  | x                | -          |
| pargan  | ARGAN                       | S-ARGAN's + Patch-GAN head           | x                | -          |

``build_generator`` makes a generator alone (what ``load_generator`` rebuilds);
``build_training`` makes all a run updates (networks, optimizers, the step),
for the loop in ``defense_hgan.gan_training``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import nn

from defense_hgan.data import dataset_info
from defense_hgan.generators import argan, dcgan, hgan, wgan_gp
from defense_hgan.generators.pixelcnn import PixelCNNPP

GENERATOR_MODELS = ("dcgan", "wgan-gp", "hgan", "autogan", "s-argan", "c-argan", "pargan")
TEACHER_MODELS = ("hgan", "autogan")
# the models whose D is DCGAN's, trained on a cross-entropy whose real targets --real-label can smooth
SMOOTHABLE_MODELS = ("dcgan", "hgan", "autogan")


@dataclass(frozen=True)
class Algorithm:
    generator: type[nn.Module]
    discriminator: type[nn.Module]
    train_step: Callable  # (networks, optimizers, next_batch, **options) -> {loss name: scalar tensor}
    lr: float
    betas: tuple[float, float]


ALGORITHMS = {
    "dcgan": Algorithm(dcgan.Generator, dcgan.Discriminator, dcgan.train_step, dcgan.LR, dcgan.BETAS),
    "wgan-gp": Algorithm(wgan_gp.Generator, wgan_gp.Critic, wgan_gp.train_step, wgan_gp.LR, wgan_gp.BETAS),
    "hgan": Algorithm(dcgan.Generator, dcgan.Discriminator, hgan.train_step, dcgan.LR, dcgan.BETAS),
    "autogan": Algorithm(dcgan.Generator, dcgan.Discriminator, hgan.autogan_train_step, dcgan.LR, dcgan.BETAS),
    "s-argan": Algorithm(argan.Generator, argan.SpatialDiscriminator, argan.train_step, argan.LR, argan.BETAS),
    "c-argan": Algorithm(argan.Generator, argan.ChannelDiscriminator, argan.train_step, argan.LR, argan.BETAS),
    "pargan": Algorithm(argan.Generator, argan.PatchDiscriminator, argan.train_step, argan.LR, argan.BETAS),
}


@dataclass
class Training:
    """What one training run updates: networks by name, their optimizers, and the step that updates them."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    step: Callable  # (networks, optimizers, next_batch) -> {loss name: scalar tensor}


def algorithm(model: str) -> Algorithm:
    """The training algorithm of a model name; an unknown name is a ValueError that lists the known ones."""
    if model not in ALGORITHMS:
        raise ValueError(f"unknown generator model {model!r}; expected one of {', '.join(GENERATOR_MODELS)}")
    return ALGORITHMS[model]


def build_generator(model: str, dataset: str, **options) -> nn.Module:
    """A fresh generator of ``model`` for ``dataset``; options: latent_dim, width."""
    generator_class = algorithm(model).generator
    try:
        return generator_class(dataset_info(dataset).image_shape, **options)
    except TypeError as err:
        raise ValueError(f"the {model} generator does not take the options {sorted(options)} ({err}); "
                         f"it takes latent_dim and width") from None


def build_training(
    model: str,
    dataset: str,
    generator_options: dict | None = None,
    teacher_options: dict | None = None,
    teacher_loss: str | None = None,
    device: torch.device | str = "cpu",
    teacher_batches: Callable[[int], torch.Tensor] | None = None,
    real_label: float = 1.0,
    d_lr: float | None = None,
) -> Training:
    """Networks (on ``device``), optimizers and step for training ``model`` on ``dataset``.

    ``teacher_options`` are PixelCNNPP's (nr_resnet, nr_filters, nr_logistic_mix,
    dropout) and, with ``teacher_loss`` ("nll", the default, or "l1"), apply to hgan and autogan only.
    ``teacher_batches(n)``, for hgan and autogan, replaces the trained teacher by a frozen one's
    precomputed images (``defense_hgan.frozen_teacher``): no teacher network is built or updated.
    ``real_label`` below 1, for dcgan, hgan and autogan, smooths D's real targets (``dcgan.adversarial_step``).
    ``d_lr`` replaces the algorithm's Adam learning rate for D (or the critic), G's staying the algorithm's.
    """
    chosen = algorithm(model)
    smoothing = real_label_option(model, real_label)
    check_d_lr(d_lr)
    image_shape = dataset_info(dataset).image_shape
    networks = {
        "generator": build_generator(model, dataset, **(generator_options or {})),
        "discriminator": chosen.discriminator(image_shape),
    }
    if teacher_batches is not None:
        if model not in TEACHER_MODELS:
            raise ValueError(f"a frozen teacher applies to {' and '.join(TEACHER_MODELS)} only, not {model}")
        step = partial(hgan.frozen_teacher_step, next_teacher_batch=teacher_batches, real_data=model == "hgan",
                       **smoothing)
        return Training(networks, _optimizers(networks, chosen, device, d_lr), step)
    if model in TEACHER_MODELS:
        teacher_loss = teacher_loss or "nll"
        networks["teacher"] = _teacher(image_shape, teacher_options or {}, teacher_loss)
    elif teacher_options or teacher_loss:
        given = sorted(teacher_options or {}) + (["teacher_loss"] if teacher_loss else [])
        raise ValueError(f"teacher options {given} apply to hgan and autogan only, not {model}")
    optimizers = _optimizers(networks, chosen, device, d_lr)
    if model not in TEACHER_MODELS:
        return Training(networks, optimizers, partial(chosen.train_step, **smoothing))
    optimizers["teacher"] = torch.optim.Adam(networks["teacher"].parameters(), lr=hgan.TEACHER_LR,
                                             betas=hgan.TEACHER_BETAS)
    return Training(networks, optimizers, partial(chosen.train_step, teacher_loss=teacher_loss, **smoothing))


def real_label_option(model: str, real_label: float) -> dict[str, float]:
    """The step's keyword for ``real_label``: none at the default 1, so the other models' steps need not take it."""
    if not 0.5 < real_label <= 1:
        raise ValueError(f"real_label must be in (0.5, 1] (1: no smoothing; 0.9 is Salimans et al.'s), "
                         f"got {real_label!r}")
    if real_label == 1:
        return {}
    if model not in SMOOTHABLE_MODELS:
        raise ValueError(f"real_label (one-sided label smoothing) applies to {', '.join(SMOOTHABLE_MODELS)}, "
                         f"whose D is DCGAN's, not {model}")
    return {"real_label": float(real_label)}


def check_d_lr(d_lr: float | None) -> None:
    """None (the algorithm's rate) or a learning rate in (0, 1); anything else is a ValueError that says so."""
    if d_lr is not None and not (isinstance(d_lr, numbers.Real) and not isinstance(d_lr, bool) and 0 < d_lr < 1):
        raise ValueError(f"d_lr must be a learning rate in (0, 1) (dcgan's is {dcgan.LR:g}), or None for the "
                         f"model's own, got {d_lr!r}")


def _optimizers(networks: dict[str, nn.Module], chosen: Algorithm, device,
                d_lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
    """Move every network to ``device``; Adam with the algorithm's settings for G and D (D's rate: ``d_lr``)."""
    for net in networks.values():
        net.to(device)
    rates = {"generator": chosen.lr, "discriminator": chosen.lr if d_lr is None else float(d_lr)}
    return {name: torch.optim.Adam(networks[name].parameters(), lr=rate, betas=chosen.betas)
            for name, rate in rates.items()}


def _teacher(image_shape, options: dict, loss: str) -> PixelCNNPP:
    if loss not in hgan.TEACHER_LOSSES:
        raise ValueError(f"unknown teacher loss {loss!r}; expected one of {', '.join(hgan.TEACHER_LOSSES)}")
    try:
        return PixelCNNPP(image_shape, **options)
    except TypeError as err:
        raise ValueError(f"unknown teacher options {sorted(options)} ({err}); PixelCNNPP takes "
                         f"nr_resnet, nr_filters, nr_logistic_mix and dropout") from None
