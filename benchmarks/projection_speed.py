"""Projection speed and accuracy: our batched ``project`` against a per-image Defense-GAN reference.

On one MNIST generator and this machine (CPU, or the GPU when there is one),
on the first --n MNIST test images, it measures:

  correctness  images the generator made, projected from fresh starts, come
               back (error far below real images'); error falls as L and R
               grow; the returned restart is the best one (each restart rerun alone);
  (a) speed    images/s at Defense-GAN's settings (L=200, R=10, momentum 0.7,
               lr 10 -> 1, fp32): ours, against a straightforward per-image
               implementation written below (one image and one restart at a
               time). The reference is slow, so it runs on --reference-n
               images and its rate is per image;
  (b) time to the reference's error: the cheapest of a small grid of our
               options (Adam, cosine schedule, early stop, fewer L and R,
               bf16 when it is faster here) whose mean error on the --n
               images reaches the reference algorithm's, against the reference's
               time for those images (its per-image rate x n);
  (c) GFLOP/s  achieved by (a) against this machine's measured fp32 and bf16
               matmul peaks. A step is the forward plus the backward to z
               only: the generator's parameters are frozen, so no weight
               gradients are computed and a step costs about 2x the forward
               (2 FLOPs per multiply-add of every conv / linear layer);
  (d) defend   the time to defend --defend-n (1,000) test images with the defaults;
  (e) bf16     reconstruction error, step time and (with --classifier) defended
               accuracy, bf16 autocast against fp32, on --bf16-n images.

Reproduce (writes benchmarks/results/projection_speed.md):

    python benchmarks/projection_speed.py --generator GENERATOR.pt \\
        --classifier CLASSIFIER.pt --data-root DATA_ROOT

``--generator random:wgan-gp`` uses an untrained generator from the registry
(a smoke run of the code paths: its numbers mean nothing). On a 2-core CPU
the full run takes hours, mostly (d) and (e); --defend-n / --bf16-n shrink them.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn

from defense_hgan import load_classifier, load_dataset
from defense_hgan.defense import defend
from defense_hgan.projection import project
from measure import machine, markdown_table, timed, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "projection_speed.md"
# Our options for (b), in order of nominal cost (L x R); the first to reach the target ends the search.
# Each runs in fp32, then again under bf16 when (e) finds bf16 faster.
CANDIDATES = [
    {"L": 50, "R": 2, "optimizer": "adam", "lr": 0.3, "schedule": "cosine"},
    {"L": 100, "R": 1, "lr": 30.0},
    {"L": 100, "R": 1, "optimizer": "adam", "lr": 0.2, "schedule": "cosine"},
    {"L": 150, "R": 1, "lr": 20.0},
    {"L": 200, "R": 1, "lr": 20.0, "early_stop": 1e-3},
    {"L": 200, "R": 1, "optimizer": "adam", "lr": 0.1, "schedule": "cosine"},
    {"L": 200, "R": 2, "lr": 20.0},
]


# ---------------------------------------------------------------- Reference

def reference_project(generator: nn.Module, x: torch.Tensor, L: int, R: int, seed: int) -> torch.Tensor:
    """Defense-GAN's reconstruct written plainly: one image, one restart at a time, fp32. Returns errors (N,)."""
    rng = torch.Generator(device=x.device).manual_seed(seed)
    d, decay_at = generator.latent_dim, math.ceil(0.8 * L)
    errors = []
    for image in x:
        best = math.inf
        for _ in range(R):
            z = (torch.randn(1, d, generator=rng, device=x.device) / math.sqrt(d)).requires_grad_(True)
            opt = torch.optim.SGD([z], lr=10.0, momentum=0.7)
            for step in range(L):
                opt.param_groups[0]["lr"] = 10.0 if step < decay_at else 1.0
                loss = (generator(z)[0] - image).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                best = min(best, (generator(z)[0] - image).square().mean().item())
        errors.append(best)
    return torch.tensor(errors)


# ---------------------------------------------------------------- Measuring

def forward_macs(generator: nn.Module) -> int:
    """Multiply-adds of one latent's forward through the conv and linear layers, counted with hooks."""
    macs = []

    def count(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)
        elif isinstance(module, nn.Conv2d):
            macs.append(output[0].numel() * module.weight[0].numel())  # outputs x (C_in/groups * kh * kw)
        elif isinstance(module, nn.ConvTranspose2d):
            macs.append(inputs[0][0].numel() * module.weight[0].numel())  # inputs x (C_out/groups * kh * kw)

    hooks = [m.register_forward_hook(count) for m in generator.modules()
             if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    device = next(generator.parameters()).device
    with torch.no_grad():
        generator(torch.zeros(2, generator.latent_dim, device=device))
    for hook in hooks:
        hook.remove()
    return sum(macs)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 1024, budget_s: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul, best of as many as fit in budget_s (bf16 without hardware support is slow)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = [timed(lambda: a @ b, device)[1]]  # the first call warms up
    while sum(times) < budget_s and len(times) < 20:
        times.append(timed(lambda: a @ b, device)[1])
    return 2 * n**3 / min(times[1:] or times) / 1e9


# ---------------------------------------------------------------- Benchmark

def run(args) -> str:
    device = torch.device(args.device)
    generator = load(args.generator, device)
    generator.requires_grad_(False)
    images, labels = load_dataset("mnist", train=False, root=args.data_root)
    images, labels = images.to(device), labels.to(device)
    x = images[args.first : args.first + args.n]
    L, R = args.L, args.R
    lines = [f"# Projection speed and accuracy\n",
             f"Machine: {machine(device)}; torch {torch.__version__}. Generator: `{args.generator}`. "
             f"MNIST test images {args.first} to {args.first + len(x) - 1}, seed {args.seed}. "
             f"Made by `benchmarks/projection_speed.py`.\n"]

    def log(what):
        print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)

    def table(header, rows):
        lines.extend(markdown_table(header, rows))

    log('(a) speed at the reference settings')
    default, ours_s = timed(lambda: project(generator, x, L, R, seed=args.seed), device)
    ref_x = x[: args.reference_n]
    ref_errors, ref_s = timed(lambda: reference_project(generator, ref_x, L, R, args.seed), device)
    ref_rate, ours_rate = len(ref_x) / ref_s, len(x) / ours_s
    lines.append(f"## (a) Images per second at L={L}, R={R}, momentum SGD, fp32\n")
    table(["implementation", "images", "seconds", "images/s", "mean error"], [
        ["per-image reference", len(ref_x), f"{ref_s:.1f}", f"{ref_rate:.3f}", f"{ref_errors.mean():.5f}"],
        ["ours, defaults", len(x), f"{ours_s:.1f}", f"{ours_rate:.3f}", f"{default.error.mean():.5f}"],
    ])
    lines.append(f"Speed-up: **{ours_rate / ref_rate:.1f}x**. Ours on the same {len(ref_x)} images: "
                 f"mean error {default.error[: len(ref_x)].mean():.5f} (same algorithm, other random starts).\n")

    log('(c) achieved GFLOP/s of (a)')
    flop_per_step = 2 * 2 * forward_macs(generator)  # forward + backward to z, 2 FLOPs per MAC
    achieved = flop_per_step * len(x) * R * default.steps / ours_s / 1e9
    peaks = {name: matmul_peak(device, dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    lines.append("## (c) Achieved throughput\n")
    table(["what", "GFLOP/s"], [
        [f"ours in (a), fp32 ({flop_per_step / 1e6:.1f} MFLOP per latent per step)", f"{achieved:.1f}"],
        ["per-image reference in (a)", f"{flop_per_step * len(ref_x) * R * L / ref_s / 1e9:.1f}"],
        ["peak: 1024x1024 fp32 matmul", f"{peaks['fp32']:.1f}"],
        ["peak: 1024x1024 bf16 matmul", f"{peaks['bf16']:.1f}"],
    ])
    lines.append(f"Ours reaches {100 * achieved / peaks['fp32']:.0f}% of the fp32 matmul peak.\n")

    log('(e) bf16 against fp32')
    xb, yb = x[: args.bf16_n], labels[args.first : args.first + args.bf16_n]
    fp32, fp32_s = timed(lambda: project(generator, xb, L, R, seed=args.seed), device)
    bf16, bf16_s = timed(lambda: project(generator, xb, L, R, seed=args.seed, bf16=True), device)
    rows = [["fp32", f"{fp32_s:.1f}", f"{fp32.error.mean():.5f}"], ["bf16", f"{bf16_s:.1f}", f"{bf16.error.mean():.5f}"]]
    if args.classifier:
        classifier = load_classifier(args.classifier, device)
        with torch.no_grad():
            for row, result in zip(rows, (fp32, bf16)):
                row.append(f"{(classifier(result.images).argmax(1) == yb).float().mean():.3f}")
    lines.append(f"## (e) bf16 autocast against fp32, {len(xb)} images, L={L}, R={R}\n")
    table(["dtype", "seconds", "mean error"] + (["defended accuracy"] if args.classifier else []), rows)
    bf16_wins = bf16_s < fp32_s and bf16.error.mean() <= 1.05 * fp32.error.mean()
    lines.append(f"bf16 is {fp32_s / bf16_s:.2f}x the speed of fp32 here; "
                 f"{'it is a candidate in (b)' if bf16_wins else 'it stays off'}.\n")

    log("(b) time to reach the reference algorithm's error")
    target, ref_time = default.error.mean().item(), len(x) / ref_rate
    lines.append(f"## (b) Time to reach the reference's mean error ({target:.5f}) on {len(x)} images\n")
    rows, best = [], None
    for options in CANDIDATES + ([{**c, "bf16": True} for c in CANDIDATES] if bf16_wins else []):
        result, seconds = timed(lambda: project(generator, x, seed=args.seed, **options), device)
        reached = result.error.mean().item() <= target
        rows.append([options, result.steps, f"{seconds:.1f}", f"{result.error.mean():.5f}", "yes" if reached else "no"])
        if reached and (best is None or seconds < best[1]):
            best = (options, seconds)
        if reached and not bf16_wins:
            break
    rows.append([f"reference per image, L={L}, R={R}", L, f"{ref_time:.1f} (rate x {len(x)})", f"{target:.5f}", "-"])
    table(["options", "steps run", "seconds", "mean error", "reached"], rows)
    lines.append(f"Best: `{best[0]}` in {best[1]:.1f} s, **{ref_time / best[1]:.1f}x** less time than the reference.\n"
                 if best else "No candidate reached the reference's error.\n")

    log('correctness')
    lines.append("## Correctness\n")
    with torch.no_grad():
        own = generator(torch.randn(args.check_n, generator.latent_dim, device=device,
                                    generator=torch.Generator(device=device).manual_seed(args.seed + 1)))
    own_error = project(generator, own, L, R, seed=args.seed + 2).error.mean()
    table(["images", "mean error"], [[f"{args.check_n} made by the generator, fresh starts", f"{own_error:.2e}"],
                                    [f"{len(x)} real test images", f"{default.error.mean():.2e}"]])
    xc = x[: args.check_n]
    table([f"L (R={R})", "mean error"], [[l, f"{project(generator, xc, l, R, seed=args.seed).error.mean():.5f}"]
                                          for l in sorted({L // 8, L // 4, L // 2, L} - {0})])
    table([f"R (L={L})", "mean error"], [[r, f"{project(generator, xc, L, r, seed=args.seed).error.mean():.5f}"]
                                          for r in sorted({1, max(1, R // 3), R})])
    z0 = torch.randn(len(xc), R, generator.latent_dim, device=device,
                     generator=torch.Generator(device=device).manual_seed(args.seed)) / math.sqrt(generator.latent_dim)
    chosen = project(generator, xc, L, R, z0=z0).error
    alone = torch.stack([project(generator, xc, L, 1, z0=z0[:, k : k + 1]).error for k in range(R)], 1)
    lines.append(f"Returned restart is the best of the {R} (each rerun alone) for "
                 f"{(chosen <= alone.min(1).values + 1e-6).sum()}/{len(xc)} images.\n")

    if not args.defend_n:
        return "\n".join(lines)
    log('(d) defending 1,000 images with the defaults')
    xd = images[: args.defend_n]
    if args.classifier:
        defended = defend(classifier, generator, seed=args.seed)
        logits, defend_s = timed(lambda: defended(xd), device)
        extra = f", defended accuracy {(logits.argmax(1) == labels[: len(xd)]).float().mean():.3f}"
    else:
        _, defend_s = timed(lambda: project(generator, xd, seed=args.seed), device)
        extra = " (projection only: no --classifier)"
    lines.append(f"## (d) Defending {len(xd)} test images with the defaults\n\n{defend_s:.1f} s "
                 f"({len(xd) / defend_s:.2f} images/s){extra}.\n")
    return "\n".join(lines)


def load(spec: str, device: torch.device) -> nn.Module:
    """A generator checkpoint, or random:MODEL for an untrained one (smoke runs)."""
    if spec.startswith("random:"):
        from defense_hgan.generators import build_generator

        torch.manual_seed(0)
        return build_generator(spec.split(":", 1)[1], "mnist").to(device).eval()
    from defense_hgan.generator_io import load_generator

    return load_generator(spec, device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", required=True, help="generator checkpoint, or random:wgan-gp for a smoke run")
    parser.add_argument("--classifier", help="classifier checkpoint, for defended accuracy in (d) and (e)")
    parser.add_argument("--data-root", help="data root holding MNIST (default: $DEFENSE_HGAN_DATA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=200, help="test images for (a), (b)")
    parser.add_argument("--first", type=int, default=0,
                        help="index of the first test image used (e.g. 100 to confirm options tuned on 0-99)")
    parser.add_argument("--reference-n", type=int, default=5, help="images for the slow per-image reference")
    parser.add_argument("--check-n", type=int, default=50, help="images for the correctness checks")
    parser.add_argument("--bf16-n", type=int, default=10, help="images for (e) (bf16 without hardware support is slow)")
    parser.add_argument("--defend-n", type=int, default=1000, help="images for (d); 0 skips it")
    parser.add_argument("--L", type=int, default=200)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
