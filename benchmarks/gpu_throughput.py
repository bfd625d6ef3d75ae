"""GPU throughput: projection images/s and training steps/s, with and without bf16 / channels_last / compile.

On one CUDA GPU it measures, side by side in one run:

  projection  images per second of ``project`` at L=200, R=10 (Defense-GAN's
              settings) on --n images through the MNIST WGAN-GP generator
              (zoo/mnist-wgan-gp/generator.pt), and their mean reconstruction
              error (bf16 must not buy speed with accuracy);
  training    generator updates per second (``build_training(model).step``, what
              ``train-generator`` runs: WGAN-GP's 5 critic updates, HGAN's
              teacher, ARGAN's 3 generator updates included) of dcgan, wgan-gp,
              hgan and s-argan at batch 64, their usual one;

each in every variant of VARIANTS: fp32, bf16 autocast, channels_last
weights and inputs, torch.compile, and their combinations. A step's cost does
not depend on the pixels (no early stop), so images are uniform noise and no
dataset is needed. Each variant is timed after a first, untimed call (where
compile compiles and cuDNN picks its kernels); the first call's seconds are
reported too. A variant that fails (torch.compile cannot run a double
backward, as WGAN-GP's gradient penalty needs) says so in its cell.

Reproduce on a GPU machine (writes benchmarks/results/gpu_throughput.md):

    python benchmarks/gpu_throughput.py

Without CUDA it refuses. ``--device cpu --smoke`` runs every code path with
tiny sizes on the CPU (what the tests do): its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from defense_hgan.devices import autocast
from defense_hgan.generators import build_training
from defense_hgan.projection import project
from measure import machine, markdown_table, timed, write_report
from projection_speed import load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu_throughput.md"
GENERATOR = ROOT / "zoo" / "mnist-wgan-gp" / "generator.pt"
TRAINING_MODELS = ("dcgan", "wgan-gp", "hgan", "s-argan")
VARIANTS = {
    "fp32": {},
    "bf16": {"bf16": True},
    "channels_last": {"channels_last": True},
    "bf16 + channels_last": {"bf16": True, "channels_last": True},
    "compile": {"compile": True},
    "compile + bf16 + channels_last": {"bf16": True, "channels_last": True, "compile": True},
}
SMOKE = {"n": 4, "L": 3, "R": 2, "batch_size": 4, "steps": 1, "warmup": 1}


def projection_rows(generator, x: torch.Tensor, L: int, R: int, variants: list[str], seed: int):
    """([variant, images/s, x fp32, first call s, mean error] per variant, {variant: images/s} of those that ran)."""
    rows, rates, base = [], {}, None
    for name in variants:
        def run():
            return project(generator, x, L, R, seed=seed, **VARIANTS[name])

        try:
            _, first = timed(run, x.device)
            result, seconds = timed(run, x.device)
        except Exception as err:
            rows.append([name, _failure(err), "-", "-", "-"])
            continue
        rates[name] = rate = len(x) / seconds
        base = rate if name == "fp32" else base
        rows.append([name, f"{rate:.1f}", _ratio(rate, base), f"{first:.1f}", f"{result.error.mean():.5f}"])
    return rows, rates


def training_step(model: str, batch_size: int, device: torch.device, seed: int, bf16: bool = False,
                  channels_last: bool = False, compile: bool = False):
    """One generator update of ``model`` on noise batches, as a function of no arguments, in the variant asked."""
    torch.manual_seed(seed)
    training = build_training(model, "mnist", device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for net in training.networks.values():
        net.to(memory_format=memory_format)
    networks = {name: torch.compile(net) if compile else net for name, net in training.networks.items()}
    data = torch.rand(10 * batch_size, 1, 28, 28, device=device)

    def next_batch() -> torch.Tensor:
        batch = data[torch.randint(len(data), (batch_size,), device=device)]
        return batch.contiguous(memory_format=memory_format)

    def step():
        with autocast(device, bf16):
            return training.step(networks, training.optimizers, next_batch)

    return step


def training_rows(models: list[str], variants: list[str], batch_size: int, steps: int, warmup: int,
                  device: torch.device, seed: int):
    """([model, then 'steps/s (x fp32)' per variant] per model, {model: {variant: steps/s}} of those that ran)."""
    rows, rates = [], {}
    for model in models:
        row, base, rates[model] = [model], None, {}
        for name in variants:
            print(f"[{time.strftime('%H:%M:%S')}] training {model}, {name}", flush=True)
            try:
                step = training_step(model, batch_size, device, seed, **VARIANTS[name])
                for _ in range(warmup):
                    step()
                _, seconds = timed(lambda: [step() for _ in range(steps)], device)
            except Exception as err:
                row.append(_failure(err))
                continue
            rates[model][name] = rate = steps / seconds
            base = rate if name == "fp32" else base
            row.append(f"{rate:.2f} ({_ratio(rate, base)})")
        rows.append(row)
    return rows, rates


def report(args, device: torch.device) -> str:
    generator = load(args.generator, device)
    x = torch.rand(args.n, *generator.image_shape, device=device, generator=torch.Generator(device).manual_seed(args.seed))
    print(f"[{time.strftime('%H:%M:%S')}] projection", flush=True)
    projection, projection_rates = projection_rows(generator, x, args.L, args.R, args.variants, args.seed)
    training, training_rates = training_rows(args.models, args.variants, args.batch_size, args.steps, args.warmup,
                                             device, args.seed)
    fastest = [f"projection: {_fastest(projection_rates)}"]
    fastest += [f"{model}: {_fastest(rates)}" for model, rates in training_rates.items()]
    return "\n".join([
        "# GPU throughput\n",
        f"Device: {machine(device)}; torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else "")
        + f"; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, TF32 cuDNN {torch.backends.cudnn.allow_tf32}. "
        f"Seed {args.seed}. Made by `python benchmarks/gpu_throughput.py`"
        + (" with --smoke: tiny sizes, so these numbers mean nothing" if args.smoke else "") + ".\n",
        f"## Projection: images/s at L={args.L}, R={args.R}, {args.n} images, generator `{_shown(args.generator)}`\n",
        *markdown_table(["variant", "images/s", "x fp32", "first call s", "mean error"], projection),
        f"## Training: generator updates/s at batch {args.batch_size} "
        f"({args.steps} timed after {args.warmup} untimed; x fp32 in brackets)\n",
        *markdown_table(["model", *args.variants], training),
        f"Fastest variant (x fp32): {'; '.join(fastest)}.\n",
    ])


def _shown(spec: str) -> str:
    """A path inside the repository as a path from its root (the same on every machine); anything else as given."""
    path = Path(spec).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else spec


def _fastest(rates: dict[str, float]) -> str:
    if not rates:
        return "none ran"
    best = max(rates, key=rates.get)
    return f"{best} ({_ratio(rates[best], rates.get('fp32'))})"


def _ratio(rate: float, base: float | None) -> str:
    return f"{rate / base:.2f}x" if base else "-"


def _failure(err: Exception) -> str:
    reason = (str(err).splitlines() or [""])[0][:80].replace("|", "/")
    return f"fails: {type(err).__name__}: {reason}"


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu only for a --smoke run")
    parser.add_argument("--generator", default=str(GENERATOR),
                        help="generator checkpoint for the projection, or random:wgan-gp")
    parser.add_argument("--n", type=int, default=1000, help="images projected (x R latents in one batch)")
    parser.add_argument("--L", type=int, default=200)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--models", default=",".join(TRAINING_MODELS), help="comma-separated generator models")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per model and variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile happens there)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes ({SMOKE}) to check the code paths")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.models, args.variants = args.models.split(","), args.variants.split(",")
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {', '.join(VARIANTS)}")
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: benchmarks/gpu_throughput.py measures a CUDA GPU and this machine has none "
                 "(torch.cuda.is_available() is False); run it where there is one, or pass --device cpu --smoke "
                 "to check its code paths")
    if device.type != "cuda" and not args.smoke:
        sys.exit(f"error: --device {args.device} is not a GPU; this benchmark's table is for GPUs "
                 f"(pass --smoke to check its code paths on the CPU)")
    write_report(report(args, device), args.out)


if __name__ == "__main__":
    main()
