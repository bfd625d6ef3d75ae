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

--options adds rows for ways to run a model's step faster (see OPTIONS):
"ours: MODEL, OPTION" keeps the algorithm (same math, maybe other float
rounding), "departure: MODEL, OPTION" changes it and is timed only, never
trained here. The last column is each row's time over its model's row's in
the same round: the median over rounds and the rounds' min-max.

Contenders are timed in interleaved rounds (each round times --steps steps of
each, after --warmup untimed ones) and the median round is reported, so that
drifts in the machine's load hit all of them alike. --clock cpu counts this
process's CPU seconds instead of wall seconds: at one torch thread on a
machine shared with other jobs, it leaves out the time others hold the core.

Reproduce (writes benchmarks/results/generator_step.md, and generator_step_options.md):

    python benchmarks/generator_step.py
    OMP_NUM_THREADS=1 python benchmarks/generator_step.py --models dcgan,wgan-gp,s-argan --options all --clock cpu \
        --threads 1 --rounds 7 --steps 2 --warmup 2 --out benchmarks/results/generator_step_options.md
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from defense_hgan.generators import GENERATOR_MODELS, TEACHER_MODELS, Training, build_training, wgan_gp
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


def adam(training: Training, **implementation) -> None:
    """The same Adam (lr, betas) in another implementation: fused=True (one kernel) or foreach=True (list ops)."""
    training.optimizers = {name: torch.optim.Adam(opt.param_groups[0]["params"], lr=opt.defaults["lr"],
                                                  betas=opt.defaults["betas"], **implementation)
                           for name, opt in training.optimizers.items()}


def channels_last(training: Training) -> None:
    for net in training.networks.values():
        net.to(memory_format=torch.channels_last)


def compile_generator(training: Training) -> None:
    """G under torch.compile (inductor); the critic's penalty needs a double backward, which compile lacks.

    Donated buffers are turned off: ARGAN's step backpropagates through G's graph twice (retain_graph).
    """
    torch._functorch.config.donated_buffer = False
    training.networks["generator"] = torch.compile(training.networks["generator"])


def torch_leaky_relu(training: Training) -> None:
    """WGAN-GP's critic as it was before wgan_gp.LeakyReLU: nn.LeakyReLU(0.2, inplace) in the same places."""
    layers = training.networks["discriminator"].net
    for index, layer in enumerate(layers):
        if isinstance(layer, wgan_gp.LeakyReLU):
            layers[index] = nn.LeakyReLU(layer.negative_slope, True)


def lazy_penalty(training: Training, every: int = 4) -> None:
    """The penalty on every ``every``-th critic step only, weighted ``every`` times (StyleGAN2's lazy R1)."""
    calls = itertools.count(1)

    def penalty(critic, real, fake):
        return every * wgan_gp.gradient_penalty(critic, real, fake) if next(calls) % every == 0 else torch.zeros(())

    training.step = partial(wgan_gp.train_step, penalty=penalty)


def half_batch_penalty(training: Training) -> None:
    """The penalty on the first half of each batch's real and fake images."""
    half = lambda critic, real, fake: wgan_gp.gradient_penalty(critic, real[:len(real) // 2], fake[:len(fake) // 2])
    training.step = partial(wgan_gp.train_step, penalty=half)


# name -> (row label, departs from the paper's algorithm, models it applies to, change made to a fresh Training)
OPTIONS = {
    "torch-leaky-relu": ("critic with nn.LeakyReLU (before)", False, ("wgan-gp",), torch_leaky_relu),
    "fused-adam": ("fused Adam", False, ("dcgan", "wgan-gp", "s-argan"), partial(adam, fused=True)),
    "foreach-adam": ("foreach Adam", False, ("dcgan", "wgan-gp", "s-argan"), partial(adam, foreach=True)),
    "channels-last": ("channels_last", False, ("dcgan", "wgan-gp", "s-argan"), channels_last),
    "compile-g": ("torch.compile(G)", False, ("wgan-gp", "s-argan"), compile_generator),
    "lazy-penalty": ("penalty every 4th critic step, x4", True, ("wgan-gp",), lazy_penalty),
    "half-penalty": ("penalty on half the batch", True, ("wgan-gp",), half_batch_penalty),
}


def contenders(models: list[str], batches, options: list[str] = ()) -> dict[str, tuple[str, callable]]:
    """name -> (model, a function running one training step); checks that the reference matches our DCGAN."""
    steps = {}
    for model in models:
        training = build_training(model, "mnist")
        steps[f"ours: {model}"] = model, lambda t=training: t.step(t.networks, t.optimizers, batches)
        if model in TEACHER_MODELS:
            frozen = build_training(model, "mnist", teacher_batches=lambda n: batches()[:n])
            steps[f"ours: {model}, frozen teacher"] = model, lambda t=frozen: t.step(t.networks, t.optimizers, batches)
        for option in options:
            label, departs, applies_to, change = OPTIONS[option]
            if model in applies_to:
                changed = build_training(model, "mnist")
                change(changed)
                name = f"{'departure' if departs else 'ours'}: {model}, {label}"
                steps[name] = model, lambda t=changed: t.step(t.networks, t.optimizers, batches)
    generator, discriminator = reference_dcgan()
    ours = build_training("dcgan", "mnist").networks
    if parameter_count(generator, discriminator) != parameter_count(ours["generator"], ours["discriminator"]):
        raise RuntimeError("the reference DCGAN no longer has our DCGAN's layers")
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    steps["reference: dcgan"] = "dcgan", lambda: reference_step(generator, discriminator, opt_g, opt_d,
                                                                batches() * 2 - 1)
    return steps


def random_batches(batch_size: int):
    """A function drawing batches of ``batch_size`` from 10,000 MNIST-shaped images (the cost ignores the pixels)."""
    data = torch.rand(10_000, *IMAGE_SHAPE)
    return lambda: data[torch.randint(len(data), (batch_size,))]


def option_names(text: str, parser: argparse.ArgumentParser) -> list[str]:
    """--options as a list: comma-separated names of OPTIONS, or all; an unknown name ends the parse."""
    names = list(OPTIONS) if text == "all" else [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(OPTIONS))
    if unknown:
        parser.error(f"unknown --options {unknown}; expected all or some of {', '.join(OPTIONS)}")
    return names


def seconds_of(fn, device: torch.device, clock: str) -> float:
    """Wall seconds (waiting for the GPU) or this process's CPU seconds that ``fn()`` took."""
    if clock == "wall":
        return timed(fn, device)[1]
    start = time.process_time()
    fn()
    return time.process_time() - start


def paired_ratio(times: list[float], model_times: list[float]) -> str:
    """The median, min and max over rounds of a row's time over its model's row's in the same round.

    Rows timed in one round share that round's load, so these ratios vary less than the times do.
    """
    ratios = [row_time / model_time for row_time, model_time in zip(times, model_times)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def run(args) -> str:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    steps = contenders(args.models, random_batches(args.batch_size), args.options)
    for _, step in steps.values():
        for _ in range(args.warmup):
            step()
    seconds = {name: [] for name in steps}
    for round_ in range(args.rounds):
        print(f"[{time.strftime('%H:%M:%S')}] round {round_ + 1}/{args.rounds}", flush=True)
        for name, (_, step) in steps.items():
            spent = seconds_of(lambda: [step() for _ in range(args.steps)], device, args.clock)
            seconds[name].append(spent / args.steps)
    per_step = {name: statistics.median(times) for name, times in seconds.items()}
    dcgan = per_step["ours: dcgan"]
    rows = [[name, f"{1000 * s:.1f}", f"{1000 * min(seconds[name]):.1f}", f"{1000 * max(seconds[name]):.1f}",
             f"{s / dcgan:.2f}", paired_ratio(seconds[name], seconds[f"ours: {steps[name][0]}"])]
            for name, s in per_step.items()]
    lines = [
        "# Generator training step cost\n",
        f"Machine: {machine(device)}; torch {torch.__version__}. MNIST-shaped batches of {args.batch_size}, "
        f"fp32, default model sizes (PixelCNN++ teacher: 1 resnet block, 32 filters, 5 mixtures). "
        f"{args.rounds} interleaved rounds of {args.steps} steps after {args.warmup} warm-up steps, "
        f"{args.clock} clock; seed {args.seed}. "
        f"Made by `{' '.join(['python benchmarks/generator_step.py', *args.argv])}`.\n",
        *markdown_table(["step", f"median {args.clock} ms", "min ms", "max ms", "x ours: dcgan",
                         "x its model's row, same round: median (min-max)"],
                        rows),
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
    parser.add_argument("--options", default="", help=f"comma-separated, or all: {', '.join(OPTIONS)}")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.models = ["dcgan"] + [m for m in args.models.split(",") if m and m != "dcgan"]
    args.options = option_names(args.options, parser)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
