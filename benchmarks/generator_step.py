"""Training step cost: our DCGAN step against a plain reference loop, and every model against DCGAN.

A step is one generator update with everything the model does around it
(WGAN-GP's 5 critic updates, HGAN's and AutoGAN's teacher pass and update),
on real-shaped MNIST batches of --batch-size drawn from one in-memory tensor.
HGAN and AutoGAN are also timed with a pretrained, frozen teacher
(``train-generator --teacher-from``), whose mean images are drawn from a
precomputed tensor instead of computed (``defense_hgan.frozen_teacher``).

  reference  the DCGAN of ``defense_hgan.generators.dcgan`` (same layers, same
             sizes, checked by parameter count) written out below as
             ``nn.Sequential`` with the PyTorch DCGAN example's loop: D on the
             real batch, D on G(z).detach(), one D step, then D on G(z), one G step;
  ours       ``build_training(model, "mnist").step``, what ``train-generator`` runs.

Contenders are timed in interleaved rounds (each round times --steps steps of
each, after --warmup untimed ones) and the median round is reported, so that
drifts in the machine's load hit all of them alike.

Reproduce (writes benchmarks/results/generator_step.md):

    python benchmarks/generator_step.py
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from defense_hgan.generators import GENERATOR_MODELS, TEACHER_MODELS, build_training
from measure import machine, markdown_table, timed, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "generator_step.md"
IMAGE_SHAPE = (1, 28, 28)


def reference_dcgan(latent_dim: int = 100, width: int = 64) -> tuple[nn.Module, nn.Module]:
    """DCGAN for 28x28 written plainly: (generator to [-1, 1], discriminator to logits)."""
    def up(c_in, c_out, kernel=4):
        return [nn.ConvTranspose2d(c_in, c_out, kernel, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]

    def down(c_in, c_out, kernel=4):
        return [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]

    generator = nn.Sequential(
        nn.Unflatten(1, (latent_dim, 1, 1)),
        nn.ConvTranspose2d(latent_dim, 4 * width, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(True),
        *up(4 * width, 2 * width, 3), *up(2 * width, width), nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh(),
    )
    discriminator = nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, True), *down(width, 2 * width),
        *down(2 * width, 4 * width, 3), nn.Conv2d(4 * width, 1, 4, 1, 0), nn.Flatten(0),
    )
    return generator, discriminator


def reference_step(generator, discriminator, opt_g, opt_d, real: torch.Tensor, latent_dim: int = 100) -> None:
    """One step of the PyTorch DCGAN example's loop, real in [-1, 1]."""
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    discriminator.zero_grad()
    F.binary_cross_entropy_with_logits(discriminator(real), ones).backward()
    fake = generator(torch.randn(len(real), latent_dim))
    F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros).backward()
    opt_d.step()
    generator.zero_grad()
    F.binary_cross_entropy_with_logits(discriminator(fake), ones).backward()
    opt_g.step()


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def contenders(models: list[str], batches) -> dict[str, callable]:
    """name -> a function running one training step; checks that the reference matches our DCGAN."""
    steps = {}
    for model in models:
        training = build_training(model, "mnist")
        steps[f"ours: {model}"] = lambda t=training: t.step(t.networks, t.optimizers, batches)
        if model in TEACHER_MODELS:
            frozen = build_training(model, "mnist", teacher_batches=lambda n: batches()[:n])
            steps[f"ours: {model}, frozen teacher"] = lambda t=frozen: t.step(t.networks, t.optimizers, batches)
    generator, discriminator = reference_dcgan()
    ours = build_training("dcgan", "mnist").networks
    if parameter_count(generator, discriminator) != parameter_count(ours["generator"], ours["discriminator"]):
        raise RuntimeError("the reference DCGAN no longer has our DCGAN's layers")
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    steps["reference: dcgan"] = lambda: reference_step(generator, discriminator, opt_g, opt_d, batches() * 2 - 1)
    return steps


def random_batches(batch_size: int):
    """A function drawing batches of ``batch_size`` from 10,000 MNIST-shaped images (a step's cost ignores the pixels)."""
    data = torch.rand(10_000, *IMAGE_SHAPE)
    return lambda: data[torch.randint(len(data), (batch_size,))]


def run(args) -> str:
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    steps = contenders(args.models, random_batches(args.batch_size))
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    seconds = {name: [] for name in steps}
    for round_ in range(args.rounds):
        print(f"[{time.strftime('%H:%M:%S')}] round {round_ + 1}/{args.rounds}", flush=True)
        for name, step in steps.items():
            seconds[name].append(timed(lambda: [step() for _ in range(args.steps)], device)[1] / args.steps)
    per_step = {name: statistics.median(times) for name, times in seconds.items()}
    dcgan = per_step["ours: dcgan"]
    rows = [[name, f"{1000 * s:.1f}", f"{1000 * min(seconds[name]):.1f}", f"{1000 * max(seconds[name]):.1f}",
             f"{s / dcgan:.2f}"] for name, s in per_step.items()]
    lines = [
        "# Generator training step cost\n",
        f"Machine: {machine(device)}; torch {torch.__version__}. MNIST-shaped batches of {args.batch_size}, "
        f"fp32, default model sizes (PixelCNN++ teacher: 1 resnet block, 32 filters, 5 mixtures). "
        f"{args.rounds} interleaved rounds of {args.steps} steps after {args.warmup} warm-up steps; "
        f"seed {args.seed}. Made by `python benchmarks/generator_step.py`.\n",
        *markdown_table(["step", "median ms", "min ms", "max ms", "x ours: dcgan"], rows),
        f"Our DCGAN step against the plain reference loop: **{per_step['reference: dcgan'] / dcgan:.2f}x** "
        f"the reference's speed (above 1: ours is faster).\n",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(GENERATOR_MODELS), help="comma-separated; dcgan is always run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per contender per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.models = ["dcgan"] + [m for m in args.models.split(",") if m and m != "dcgan"]
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
