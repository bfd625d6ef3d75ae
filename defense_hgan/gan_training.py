"""The one loop that trains every generator: data, progress, samples, checkpoints, resume, NaN guard.

What differs between DCGAN, WGAN-GP, HGAN and AutoGAN is their ``train_step``
(see ``defense_hgan.generators``); everything else is here, once. The training
set stays in memory as one tensor on the device, and each real batch is drawn
uniformly with replacement by a seeded ``torch.Generator``, so the data order
is a single RNG state that a checkpoint can hold.

OUT holds:
    generator.pt         the generator alone: ``load_generator(OUT / "generator.pt")``
    training_state.pt    every network, optimizer, the step and the RNG states, for --resume
    samples/step_XXXXXX.png  a grid of 64 samples from a fixed z, every sample_every steps
    snapshots/step_XXXXXX.pt the generator at every snapshot_every steps (0: none), for training curves
    metrics.json         written at the end

A resumed run continues bit for bit where the saved one stopped (on CPU).

Under ``torchrun --nproc-per-node N`` (see ``defense_hgan.distributed``) the
run is data-parallel: every rank starts from the same weights, draws its own
batches and noise (its own seed, derived from ``seed`` and its rank), and
every optimizer step applies the gradients averaged over the ranks, for every
network that trains (G, D or the critic with its gradient penalty, the
teacher, ARGAN's E, R and d). ``batch_size`` stays per rank, so a step sees
N x ``batch_size`` real images (the effective batch), and the learning rates
are the models' own, unscaled: GAN recipes are tuned at their batch size, and
the linear scaling rule of classifiers is not known to hold for them; a run
that wants another rate changes it in the model's module. Rank 0 alone locks
OUT and writes checkpoints, samples, snapshots and metrics; checkpoints hold
plain state dicts (no wrapper) and load as single-process ones do, and
BatchNorm's running statistics are rank 0's. ``--resume`` gives every rank the
checkpoint rank 0 read and its own saved RNG state; resumed with another
number of ranks, the ranks beyond those saved start fresh streams (the run
continues, but not bit for bit).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from defense_hgan import frozen_teacher
from defense_hgan.checkpoints import load_checkpoint, save_checkpoint
from defense_hgan.data import dataset_info, load_dataset
from defense_hgan.devices import autocast, seed_everything
from defense_hgan.distributed import World, derived_seed, session
from defense_hgan.generator_io import save_generator
from defense_hgan.generators import Training, algorithm, build_training, check_d_lr, real_label_option
from defense_hgan.locking import output_lock

STATE_KIND = "generator-training"
GENERATOR_FILE = "generator.pt"
STATE_FILE = "training_state.pt"
SNAPSHOTS = "snapshots"
SAMPLES = 64
# the progress bar and metrics.json show each loss's exponential moving average over about the last 1 / (1 - decay)
# steps: one step's GAN loss is too noisy to tell whether D is winning
LOSS_EMA_DECAY = 0.99
# what a resumed run must share with the saved one; the rest (steps, intervals, device, bf16) may change
RUN_IDENTITY = ("model", "dataset", "batch_size", "seed", "generator_options", "teacher_options", "teacher_loss",
                "teacher_from", "teacher_images", "real_label", "d_lr")


@dataclass
class GanConfig:
    model: str = "dcgan"
    dataset: str = "mnist"
    steps: int = 10_000
    batch_size: int = 64
    out: str = "runs/generator"
    sample_every: int = 500
    checkpoint_every: int = 500
    snapshot_every: int = 0  # keep a copy of the generator every this many steps; 0 keeps none
    seed: int = 0
    device: str = "auto"
    # bf16 autocast. Off by default: on this project's AMD EPYC (no native bf16) a DCGAN step at batch 64
    # took 13.9 s with it against 0.63 s without (1 thread, shared machine), about 20x slower.
    bf16: bool = False
    resume: bool = False
    overwrite: bool = False  # start afresh in an OUT that holds a model, replacing it
    data_root: str | None = None
    download: bool = False
    generator_options: dict = field(default_factory=dict)  # latent_dim, width
    teacher_options: dict = field(default_factory=dict)  # PixelCNNPP's nr_resnet, nr_filters, ...
    teacher_loss: str | None = None  # hgan/autogan: "nll" (default) or "l1"
    # hgan/autogan: a pretrained, frozen teacher taken from this HGAN/AutoGAN training state (or another frozen run's
    # teacher.pt) instead of Algorithm 1's jointly trained one, and how many training images its precomputed mean
    # images cover (defense_hgan.frozen_teacher)
    teacher_from: str | None = None
    teacher_images: int = 10_000
    real_label: float = 1.0  # dcgan/hgan/autogan: D's target for real images; below 1, one-sided label smoothing
    d_lr: float | None = None  # D's (or the critic's) Adam learning rate; None: the model's, the papers'
    progress: bool = True


class TrainingDiverged(FloatingPointError):
    """A loss turned NaN or infinite; the last good checkpoint is kept."""


def train_generator(config: GanConfig) -> dict:
    """Train ``config.model`` for ``config.steps`` steps (in all, counting a resumed run's), return the metrics.

    OUT is locked for the run (``locking.output_lock``): a second run into it is refused at once.
    Under torchrun every rank returns the same metrics (losses averaged over the ranks).
    """
    _check(config)
    with session(config.device) as world, ExitStack() as held:
        world.share(lambda: held.enter_context(output_lock(config.out)))
        return _train(config, world)


def _train(config: GanConfig, world: World) -> dict:
    out, device = Path(config.out), world.device
    saved = world.share(lambda: _read_state(out, config)) if config.resume else None
    if saved is None:
        world.share(lambda: _fresh(out, config.overwrite))
    images = load_dataset(config.dataset, train=True, root=config.data_root, download=config.download)[0].to(device)
    if config.teacher_from:
        world.share(lambda: frozen_teacher.prepare(config.teacher_from, out, config.dataset, images,
                                                   config.teacher_images, config.resume, config.progress))
    data_order = seed_everything(config.seed)
    teacher_batches = (frozen_teacher.teacher_batches(out, config.teacher_images, data_order, device)
                       if config.teacher_from else None)
    training = build_training(config.model, config.dataset, config.generator_options, config.teacher_options,
                              config.teacher_loss, device, teacher_batches, config.real_label, config.d_lr)
    if world.size > 1:  # the same initial weights on every rank, then each its own batches and noise
        _reseed(world.rank_seed(config.seed), data_order)
    start = 0 if saved is None else _restore(saved, training, data_order, world, config.seed)
    for net in training.networks.values():
        world.broadcast_module(net)
    for optimizer in training.optimizers.values():
        world.average_gradients_before_step(optimizer)

    def next_batch() -> torch.Tensor:
        return images[torch.randint(len(images), (config.batch_size,), generator=data_order).to(device)]

    generator = training.networks["generator"]
    fixed_z = torch.randn(SAMPLES, generator.latent_dim, generator=torch.Generator().manual_seed(config.seed)).to(device)
    began, last_saved, losses, loss_ema = time.perf_counter(), start, {}, {}
    with tqdm(total=config.steps, initial=start, desc=f"train-generator {config.model}",
              disable=not (config.progress and world.is_main)) as bar:
        for step in range(start + 1, config.steps + 1):
            with autocast(device, config.bf16):
                losses = {name: float(value) for name, value in training.step(
                    training.networks, training.optimizers, next_batch).items()}
            losses = world.mean(losses)  # every rank then sees the same losses, and a NaN stops all of them
            _guard({f"{name} loss": value for name, value in losses.items()}, step, out, last_saved)
            loss_ema = {name: value if name not in loss_ema else
                        LOSS_EMA_DECAY * loss_ema[name] + (1 - LOSS_EMA_DECAY) * value
                        for name, value in losses.items()}
            bar.update()
            bar.set_postfix({name: f"{value:.3f}" for name, value in loss_ema.items()})
            if world.is_main and (step % config.sample_every == 0 or step == config.steps):
                _save_samples(generator, fixed_z, out / "samples" / f"step_{step:06d}.png")
            if step % config.checkpoint_every == 0 or step == config.steps:
                # a step can leave NaN weights behind a finite loss; never save those over a good checkpoint
                weights = {f"{name} weights": _weights_sum(net) for name, net in training.networks.items()}
                _guard(weights, step, out, last_saved)
                _save(out, config, training, data_order, step, world, weights)
                last_saved = step
            if world.is_main and config.snapshot_every and step % config.snapshot_every == 0:
                save_generator(generator, out / SNAPSHOTS / f"step_{step:06d}.pt", config.model, config.dataset,
                               config.generator_options)
    seconds = time.perf_counter() - began
    steps_run = config.steps - start
    metrics = {
        "model": config.model,
        "dataset": config.dataset,
        "steps": config.steps,
        "steps_this_run": steps_run,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(steps_run, 1), 4),
        "final_losses": losses,
        "loss_ema": loss_ema,  # over about the last 100 steps of this run (LOSS_EMA_DECAY)
        "seed": config.seed,
        "device": str(device),
        "config": asdict(config),
    }
    if world.size > 1:
        metrics.update(world_size=world.size, effective_batch_size=world.size * config.batch_size)
    if world.is_main:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _check(config: GanConfig) -> None:
    """Refuse a bad config before anything is read or written (a misspelt model is not a missing dataset)."""
    algorithm(config.model)
    dataset_info(config.dataset)
    real_label_option(config.model, config.real_label)
    check_d_lr(config.d_lr)
    for name in ("steps", "batch_size", "sample_every", "checkpoint_every"):
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)!r}")
    if config.resume and config.overwrite:
        raise ValueError("pass --resume (continue the run in OUT) or --overwrite (replace it), not both")
    if int(config.snapshot_every) < 0:
        raise ValueError(f"snapshot_every must be 0 (no snapshots) or a positive integer, got {config.snapshot_every!r}")
    if config.teacher_from and (config.teacher_options or config.teacher_loss):
        raise ValueError("a frozen teacher (--teacher-from) keeps its source run's architecture and is not trained; "
                         "drop the teacher options and teacher_loss")


def _fresh(out: Path, overwrite: bool) -> None:
    """Check OUT holds no model; with ``overwrite``, remove the model and everything of its run."""
    held = [name for name in (STATE_FILE, GENERATOR_FILE) if (out / name).exists()]
    if held and not overwrite:
        resume = "pass --resume to continue it, " if STATE_FILE in held else ""
        raise ValueError(f"{out} already holds a trained generator ({', '.join(held)}); {resume}pass --overwrite "
                         f"to replace it, or choose another --out")
    if overwrite:  # nothing of the old run may outlive it: a later --resume would continue the old run
        for name in (STATE_FILE, GENERATOR_FILE, "metrics.json", frozen_teacher.TEACHER_FILE, frozen_teacher.IMAGES_FILE):
            (out / name).unlink(missing_ok=True)
        for folder in ("samples", SNAPSHOTS):
            shutil.rmtree(out / folder, ignore_errors=True)


def _guard(values: dict[str, float], step: int, out: Path, last_saved: int) -> None:
    """Stop with what went wrong, and where the last good checkpoint is, if any value is NaN or infinite."""
    bad = [f"the {name} became {value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        kept = (f"the last good checkpoint, from step {last_saved}, is kept in {out} (continue it with --resume)"
                if last_saved else "no checkpoint had been written yet")
        raise TrainingDiverged(f"training stopped at step {step}: {', '.join(bad)}; {kept}")


def _weights_sum(net: torch.nn.Module) -> float:
    """Finite exactly when every parameter is: float32 values cannot overflow a float64 sum of this size."""
    return float(sum(p.detach().double().sum() for p in net.parameters()))


@torch.no_grad()
def _save_samples(generator: torch.nn.Module, z: torch.Tensor, path: Path) -> None:
    """Samples as the saved generator will make them: in eval mode (BatchNorm running statistics)."""
    generator.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(generator(z).float(), path, nrow=8)
    generator.train()


def _rng_state(data_order: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "data": data_order.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _reseed(seed: int, data_order: torch.Generator) -> None:
    torch.manual_seed(seed)
    data_order.manual_seed(seed)


def _save(out: Path, config: GanConfig, training: Training, data_order: torch.Generator, step: int,
          world: World, weights: dict[str, float]) -> None:
    """Rank 0 writes the generator and the training state, with every rank's RNG state (under N > 1 ranks).

    ``weights`` (each network's weight sum) must be the same on every rank: averaged gradients keep the
    ranks' weights identical, so a difference means they drifted apart, and their checkpoint would be rank 0's alone.
    """
    gathered = world.gather((weights, _rng_state(data_order)))
    if any(other != weights for other, _ in gathered):
        raise RuntimeError(f"at step {step} the ranks' weights differ ({[other for other, _ in gathered]}); "
                           f"data-parallel training lost its synchrony, so no checkpoint was written")
    rng_by_rank = [rng for _, rng in gathered]
    if not world.is_main:
        return
    save_generator(training.networks["generator"], out / GENERATOR_FILE, config.model, config.dataset,
                   config.generator_options)
    state = {
        "step": step,
        "networks": {name: net.state_dict() for name, net in training.networks.items()},
        "optimizers": {name: opt.state_dict() for name, opt in training.optimizers.items()},
        "rng": rng_by_rank[0],
    }
    if world.size > 1:
        state["rng_by_rank"] = rng_by_rank
    save_checkpoint(out / STATE_FILE, STATE_KIND, asdict(config), state)


def _read_state(out: Path, config: GanConfig) -> dict:
    """OUT's training state, checked against ``config``."""
    if not (out / STATE_FILE).exists():
        raise ValueError(f"--resume: {out} holds no {STATE_FILE} to continue; drop --resume to start a new run")
    state = load_checkpoint(out / STATE_FILE, STATE_KIND)
    saved = state["config"]
    defaults = {f.name: f.default for f in fields(GanConfig)}  # what a run saved before a setting existed had
    changed = [f"{key} {saved.get(key, defaults[key])!r} -> {getattr(config, key)!r}" for key in RUN_IDENTITY
               if saved.get(key, defaults[key]) != getattr(config, key)]
    if changed:
        raise ValueError(f"--resume: {out} was trained with other settings ({'; '.join(changed)}); "
                         f"resume with the saved ones, or choose another --out")
    if state["step"] >= config.steps:
        raise ValueError(f"--resume: {out} is already at step {state['step']}; pass --steps above it to train on")
    return state


def _restore(state: dict, training: Training, data_order: torch.Generator, world: World, seed: int) -> int:
    """Load a training state into ``training`` and this rank's RNGs; return the step it was saved at.

    A rank that the saved run did not have starts a stream of its own, from the seed, its rank and the step.
    """
    for name, net in training.networks.items():
        net.load_state_dict(state["networks"][name])
    for name, optimizer in training.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    rng_by_rank = state.get("rng_by_rank", [state["rng"]])
    if world.rank >= len(rng_by_rank):
        _reseed(derived_seed(seed, world.rank, state["step"]), data_order)
        return state["step"]
    rng = rng_by_rank[world.rank]
    torch.set_rng_state(rng["torch"])
    data_order.set_state(rng["data"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state["step"]
