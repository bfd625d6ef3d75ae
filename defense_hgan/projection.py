"""Defense-GAN's projection: the generator's closest image to each input.

For every image x, z* = argmin_z mean((G(z) - x)^2) is found by gradient
descent from R random starts, and the best restart's G(z*) replaces x. The
defaults are Defense-GAN's own ``reconstruct`` (Samangouei et al. 2018), so
results compare with the paper: z0 ~ N(0, 1/latent_dim), momentum 0.7 descent
at learning rate 10 cut x0.1 after 80% of the L steps, the per-image MSE
summed over the batch (each image's gradient is then independent of what it is
batched with), the generator in eval mode, the best restart by per-image error.

All images and restarts go through the generator as one batch per step
(chunked to ``max_batch`` latents); gradients are taken for z alone.

``prune`` (off by default) is restart pruning by successive halving: at a few
rungs each image keeps the better half of its restarts, so most of the L steps
run on one or two latents per image instead of R. Every restart descends
independently, and a survivor keeps its optimiser state, so a survivor's
trajectory is the one it has in the full run: the pruned result is the full
run's whenever the full run's best restart survives the rungs. It often does
not: the restart that ends best can trail for a long time (a plateau it
escapes late), so pruning changes some defended predictions;
benchmarks/restart_ranks.py replays every prune value on a full run's errors
and says how many.

Any generator works that has ``latent_dim``, ``image_shape`` (C, H, W) and
maps (N, latent_dim) latents to (N, C, H, W) images in [0, 1].
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import NamedTuple

import torch
from torch import nn

from defense_hgan.devices import autocast

OPTIMIZERS = {"sgd-momentum": 10.0, "adam": 0.05}  # name -> default learning rate
SCHEDULES = ("step", "cosine", "constant")
EARLY_STOP_EVERY = 10  # steps between early-stop checks: one step's loss is too noisy to judge progress
# Latents per generator call when max_batch is None. On a 2-core CPU, chunks of 100-500 latents ran
# the MNIST WGAN-GP generator ~30% faster per latent than 2,000 (they stay in cache); GPUs want big batches.
DEFAULT_MAX_BATCH = {"cpu": 500, "gpu": 10_000}
# bf16, channels_last and compile default off: on the 2-core AVX2 CPU, one step of 1,000 latents through the
# MNIST WGAN-GP generator took ~2.8 s in fp32 and ~46 s under bf16 autocast (no native bf16 convolution:
# PyTorch falls back to slow_conv_transpose2d); channels_last was within noise; compile was ~5% faster after a
# 75 s compile. benchmarks/projection_speed.py re-measures bf16 on whatever machine runs it.


class Projection(NamedTuple):
    images: torch.Tensor  # (N, C, H, W) in [0, 1]: G(z) of the best restart
    z: torch.Tensor  # (N, latent_dim): the best restart's latent
    error: torch.Tensor  # (N,): per-image MSE between ``images`` and the input
    steps: int  # optimiser steps run; below L only when early stop fired in every chunk


def project(
    generator: nn.Module,
    x: torch.Tensor,
    L: int = 200,
    R: int = 10,
    *,
    optimizer: str = "sgd-momentum",
    lr: float | None = None,
    schedule: str = "step",
    early_stop: float | None = None,
    prior_weight: float = 0.0,
    tolerance: float = 0.0,
    prune: float | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    seed: int | None = None,
    z0: torch.Tensor | None = None,
    max_batch: int | None = None,
    progress: bool = False,
) -> Projection:
    """Project images x (N, C, H, W) in [0, 1] onto the generator's range.

    ``optimizer`` is "sgd-momentum" (Defense-GAN's, lr 10) or "adam" (lr 0.05);
    ``schedule`` is "step" (x0.1 after 80% of L, Defense-GAN's), "cosine" or
    "constant". ``early_stop=tol`` ends a chunk once its mean best-restart
    error fell by less than the fraction tol over the last 10 steps.
    ``prior_weight=w`` adds w * ||z||^2 / latent_dim to each latent's loss (a
    MAP projection under z ~ N(0, I) that keeps z near the prior, a lever
    against fitting an attack); 0, Defense-GAN's, leaves the plain MSE.
    ``tolerance=t`` lets each pixel differ by up to t at no cost (the loss is
    the mean of max(|G(z) - x| - t, 0)^2, which also picks the best restart):
    a projection told the attack's L-inf budget, so that x + delta and the
    clean digit it came from fit equally well; ``error`` stays the plain MSE.
    ``prune=f`` (a fraction of L in (0, 1)) halves each image's restarts,
    keeping those with the lowest error at that step (ceil(k/2) of k), after
    step ceil(f L) and again at every doubling of that step (2fL, 4fL, ...)
    below L until one is left: at L=200, R=10, ``prune=0.05`` halves at steps
    10, 20, 40 and 80 and runs 410 latent-steps per image instead of 2,000.
    None, the default, runs every restart for every step (Defense-GAN's).
    ``bf16`` runs the generator under bf16 autocast (the returned images and
    errors are always fp32); ``channels_last`` and ``compile`` are speed
    options whose worth depends on the generator and device. The same x and
    seed give the same result; ``seed=None`` draws from torch's global RNG;
    ``z0`` (N, R, latent_dim) replaces the random starts. ``max_batch`` caps
    the latents per generator call (default 500 on CPU, 10,000 on GPU);
    chunking never changes the result.

    Example::

        result = project(generator, images, L=200, R=10, seed=0)
        result.images, result.error  # (N, C, H, W), (N,)
    """
    check_images(generator, x)
    if max_batch is None:
        max_batch = DEFAULT_MAX_BATCH["cpu" if x.device.type == "cpu" else "gpu"]
    lr = _check_options(L, R, optimizer, lr, schedule, early_stop, max_batch)
    for name, value in (("prior_weight", prior_weight), ("tolerance", tolerance)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    rungs = {} if prune is None else halving_rungs(prune, L, R)
    # A clone outside inference mode, so descent works even when the caller is in torch.inference_mode().
    with torch.inference_mode(False):
        target = x.detach().to(torch.float32).clone()
    z0 = _starts(generator.latent_dim, len(x), R, x.device, seed) if z0 is None else _check_starts(z0, x, R, generator)

    images_per_chunk = max(1, max_batch // R)
    starts = range(0, len(x), images_per_chunk)
    bar = _progress_bar(len(starts) * L, progress)
    with _frozen(generator, channels_last), torch.inference_mode(False), torch.enable_grad():
        run = torch.compile(generator) if compile else generator
        chunks = [
            _descend(run, target[i : i + images_per_chunk], z0[i : i + images_per_chunk],
                     L, optimizer, lr, schedule, early_stop, prior_weight, tolerance, rungs, bf16, bar)
            for i in starts
        ]
    bar.close()
    images, z, error, steps = zip(*chunks)
    return Projection(torch.cat(images).to(x.dtype), torch.cat(z), torch.cat(error), max(steps))


def check_images(generator: nn.Module, x) -> None:
    """Raise a TypeError / ValueError naming what was given and what the generator expects."""
    c, h, w = generator.image_shape
    expected = f"(N, {c}, {h}, {w}) float images in [0, 1]"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}; expected {expected}")
    if not x.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {x.dtype}; "
                        f"for 0-255 integer images pass x.float() / 255")
    if x.dim() != 4:
        raise ValueError(f"images must be 4-D, got shape {tuple(x.shape)}; expected {expected}")
    if x.shape[1] != c:
        hint = " (channels last? permute to NCHW with x.permute(0, 3, 1, 2))" if x.shape[-1] == c else ""
        raise ValueError(f"images have {x.shape[1]} channels, the generator makes {c}: "
                         f"got shape {tuple(x.shape)}, expected {expected}{hint}")
    if tuple(x.shape[2:]) != (h, w):
        raise ValueError(f"images are {x.shape[2]}x{x.shape[3]}, the generator makes {h}x{w}: "
                         f"got shape {tuple(x.shape)}, expected {expected}")
    if len(x) == 0:
        raise ValueError(f"got an empty batch of shape {tuple(x.shape)}; expected at least one image")
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise ValueError(f"images hold {bad} NaN or infinite values; expected {expected}")
    low, high = x.min().item(), x.max().item()
    if not (low >= 0.0 and high <= 1.0):
        hint = "; divide 0-255 images by 255" if high > 1.0 else ""
        raise ValueError(f"images must be in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}")


def _starts(latent_dim: int, n: int, R: int, device: torch.device, seed: int | None) -> torch.Tensor:
    """Defense-GAN's z0 ~ N(0, 1/latent_dim), (n, R, latent_dim), all drawn at once so chunking never changes them."""
    rng = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    return torch.randn(n, R, latent_dim, device=device, generator=rng) / math.sqrt(latent_dim)


def halving_rungs(prune: float, L: int, R: int) -> dict[int, int]:
    """Successive halving's rungs for ``prune``: {step: restarts each image keeps after that step}.

    The first rung is step ceil(prune L); each later one doubles it, so every
    rung costs about the same latent-steps while the restarts halve.
    """
    rungs, kept, at = {}, R, check_prune(prune) * L
    while kept > 1 and math.ceil(at) < L:
        kept = math.ceil(kept / 2)
        rungs[math.ceil(at)] = kept  # two halvings at one step (tiny prune * L) keep the later count
        at *= 2
    return rungs


def check_prune(prune) -> float:
    """``prune`` if it is a fraction in (0, 1), else a ValueError saying what it means."""
    if isinstance(prune, bool) or not isinstance(prune, numbers.Real) or not 0 < prune < 1:
        raise ValueError(f"prune must be None (off) or a fraction of L in (0, 1) at which successive halving "
                         f"of the restarts starts, e.g. 0.05; got {prune!r}")
    return prune


def _check_starts(z0, x: torch.Tensor, R: int, generator: nn.Module) -> torch.Tensor:
    expected = (len(x), R, generator.latent_dim)
    if not isinstance(z0, torch.Tensor) or tuple(z0.shape) != expected:
        got = tuple(z0.shape) if isinstance(z0, torch.Tensor) else type(z0).__name__
        raise ValueError(f"z0 must be a tensor of shape (N, R, latent_dim) = {expected}, got {got}")
    if not torch.isfinite(z0).all():  # a NaN start descends to NaN images, and NaN logits, without a word
        bad = (~torch.isfinite(z0)).sum().item()
        raise ValueError(f"z0 must be finite, got {bad} NaN or infinite values of {z0.numel()}")
    return z0.detach().to(x.device, torch.float32)


def _check_options(L, R, optimizer, lr, schedule, early_stop, max_batch) -> float:
    """Validate the options; return the learning rate to use."""
    for name, value in (("L", L), ("R", R), ("max_batch", max_batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    if early_stop is not None and not early_stop >= 0:
        raise ValueError(f"early_stop must be None or a tolerance >= 0, got {early_stop!r}")
    lr = OPTIMIZERS[optimizer] if lr is None else lr
    if not (lr > 0 and math.isfinite(lr)):  # an infinite step sends every latent, and image, to NaN
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return lr


def _descend(generator, target, z0, L, optimizer, lr, schedule, early_stop, prior_weight, tolerance, rungs, bf16,
             bar):
    """Descend one chunk's B x R latents together; return its best restarts (images, z, error, steps).

    ``rungs`` ({step: restarts kept}) prunes each image's restarts after those steps.
    """
    b, r, d = z0.shape
    z = z0.reshape(b * r, d).clone().requires_grad_(True)  # (B*r, d), image-major; r falls at each rung
    opt = (torch.optim.SGD([z], lr=lr, momentum=0.7) if optimizer == "sgd-momentum"
           else torch.optim.Adam([z], lr=lr))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(schedule, L))
    watched = math.inf
    for step in range(1, L + 1):
        with autocast(z.device, bf16):
            recon = generator(z)
        error = restart_mse(recon.float(), target, r, tolerance)  # (B, r)
        loss = error.sum() + prior_weight * z.square().sum() / d if prior_weight else error.sum()
        (z.grad,) = torch.autograd.grad(loss, z)
        opt.step()
        sched.step()
        bar.update()
        if step in rungs:
            z, r = _keep_best(opt, z, error.detach(), rungs[step]), rungs[step]
        if early_stop is not None and step % EARLY_STOP_EVERY == 0:
            current = error.detach().min(1).values.mean().item()
            if math.isfinite(watched) and watched - current <= early_stop * watched:  # not before a second check
                bar.update(L - step)
                break
            watched = current
    with torch.no_grad():  # the final latents, scored in fp32 whatever ran the steps
        z = z.detach()
        recon = generator(z).float()
        best = restart_mse(recon, target, r, tolerance).argmin(1)  # (B,)
        pick = torch.arange(b, device=z.device) * r + best
    return recon[pick], z[pick], restart_mse(recon[pick], target, 1)[:, 0], step


def _keep_best(opt: torch.optim.Optimizer, z: torch.Tensor, error: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` lowest-error restarts of each image (error (B, r)) as the optimiser's new latents.

    Their optimiser state (momentum, Adam's moments) goes with them, so their
    descent continues exactly as it would have without the others.
    """
    b, r = error.shape
    rows = (torch.arange(b, device=z.device)[:, None] * r + best_restarts(error, keep)).flatten()
    survivors = z.detach()[rows].requires_grad_(True)
    state = opt.state.pop(z)
    opt.state[survivors] = {name: value[rows] if value.dim() else value for name, value in state.items()}
    opt.param_groups[0]["params"] = [survivors]
    return survivors


def best_restarts(error: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (B, keep) of each image's ``keep`` lowest errors of error (B, r), in restart order (ties: lower index)."""
    return error.sort(dim=1, stable=True).indices[:, :keep].sort(1).values


def restart_mse(recon: torch.Tensor, target: torch.Tensor, r: int, tolerance: float = 0.0) -> torch.Tensor:
    """Per-image, per-restart MSE (B, R) of recon (B*R, C, H, W) against target (B, C, H, W).

    Each pixel's difference beyond ``tolerance`` counts (``project``'s tolerance; 0 is the plain MSE).
    """
    difference = recon.view(len(target), r, *target.shape[1:]) - target[:, None]
    if tolerance:
        difference = (difference.abs() - tolerance).clamp(min=0)
    return difference.square().mean((2, 3, 4))


def _lr_factor(schedule: str, L: int):
    """The learning-rate multiplier at each step (LambdaLR's contract)."""
    if schedule == "step":
        decay_at = math.ceil(0.8 * L)  # Defense-GAN: x0.1 from step ceil(0.8 L) on
        return lambda step: 1.0 if step < decay_at else 0.1
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * step / L))
    return lambda step: 1.0


@contextlib.contextmanager
def _frozen(generator: nn.Module, channels_last: bool):
    """Eval mode with no parameter gradients (optionally channels_last weights), restored on exit."""
    was_training = generator.training
    wanted_grad = [p.requires_grad for p in generator.parameters()]
    generator.eval().requires_grad_(False)
    if channels_last:
        generator.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if channels_last:
            generator.to(memory_format=torch.contiguous_format)
        for p, wanted in zip(generator.parameters(), wanted_grad):
            p.requires_grad_(wanted)
        generator.train(was_training)


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="projecting", unit="step", disable=not enabled)
