"""Training loop for the classifiers: resident tensors, batched augmentation, one recipe per family.

MNIST models use Adam with a linearly decaying rate. The CIFAR-10 net uses the
airbench-style recipe: Nesterov SGD whose rate, momentum and weight decay are
decoupled (changing one leaves the step size of the others alone), a
triangular schedule (up from 0.2 to the peak, then linearly to zero, so the final
weights are not left noisy by a still-large step), label smoothing, and flip + 2-pixel translate augmentation.

Under ``torchrun --nproc-per-node N`` (see ``defense_hgan.distributed``) the
model trains in DistributedDataParallel: each epoch's one shuffled order (the
same on every rank) is dealt out N x ``batch_size`` images a step, rank r
taking every N-th of them from the r-th, so an epoch still passes over the
training set once, in N x fewer steps of an effective batch of N x the
recipe's ``batch_size`` (which stays per rank). The recipe's learning rate and schedule are kept as
they are, unscaled: the schedule follows the (fewer) steps. Augmentation
draws from a stream of each rank's own. Test accuracy is rank 0's.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from defense_hgan.devices import seed_everything
from defense_hgan.distributed import session


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" or "sgd"
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0  # fraction of each weight removed per step at peak rate (sgd)
    norm_lr_scale: float = 1.0  # sgd: BatchNorm shifts learn this many times faster
    label_smoothing: float = 0.0
    augment: bool = False
    peak_at: float = 0.0  # fraction of training at which the rate peaks


MNIST_RECIPE = Recipe(optimizer="adam", batch_size=128, lr=1e-3)
# airbench's rates are per 1,024 examples and per unit of Nesterov step gain 1 + 1/(1 - momentum):
# scaled here to a batch of 512, which gives twice the updates of 1,024 in the same CPU time.
_CIFAR_SCALE = (512 / 1024) / (1 + 1 / (1 - 0.85))
CIFAR_RECIPE = Recipe(
    optimizer="sgd", batch_size=512, lr=11.5 * _CIFAR_SCALE, momentum=0.85,
    weight_decay=0.0153 * _CIFAR_SCALE, norm_lr_scale=64.0, label_smoothing=0.2,
    augment=True, peak_at=0.23,
)


def recipe_for(dataset: str) -> Recipe:
    return CIFAR_RECIPE if dataset == "cifar10" else MNIST_RECIPE


def flip_and_translate(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flip and a random translation of up to ``shift`` pixels (reflect padding), per image."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
    padded = nn.functional.pad(images, (shift,) * 4, mode="reflect")
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, n), generator=generator)).to(images.device)
    rows = (torch.arange(h, device=images.device) + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=images.device) + dx[:, None])[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def _optimizer(model: nn.Module, recipe: Recipe, total_steps: int):
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=recipe.lr)
        shape = lambda step: 1.0 - step / total_steps  # noqa: E731
    else:
        norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
        norms = [p for p in params if id(p) in norm_ids]
        others = [p for p in params if id(p) not in norm_ids]
        norm_lr = recipe.lr * recipe.norm_lr_scale
        optimizer = torch.optim.SGD(
            [dict(params=norms, lr=norm_lr, weight_decay=recipe.weight_decay / norm_lr),
             dict(params=others, lr=recipe.lr, weight_decay=recipe.weight_decay / recipe.lr)],
            momentum=recipe.momentum, nesterov=True,
        )
        peak = max(1, int(recipe.peak_at * total_steps))
        shape = lambda step: (  # noqa: E731
            0.2 + 0.8 * step / peak if step < peak else 1.0 - (step - peak) / max(1, total_steps - peak)
        )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, shape)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` in eval mode on [0, 1] images, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(images)


def train_classifier(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    recipe: Recipe,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    fresh: bool = True,
) -> dict:
    """Train in place and return metrics: test accuracy, loss per epoch, seconds, seed, device.

    ``fresh=False`` fine-tunes a trained model: a data-derived initialisation (CifarNet's whitening stem) is
    kept, not recomputed from ``train``.

    Under torchrun every rank returns the same metrics (losses averaged over the ranks).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    with session(device) as world:
        generator = seed_everything(seed)  # the shuffled order: the same on every rank
        augment_rng = generator if world.size == 1 else torch.Generator().manual_seed(world.rank_seed(seed))
        device = world.device
        images, labels = train
        model.to(device=device, memory_format=torch.channels_last)
        start = time.perf_counter()
        if fresh and hasattr(model, "init_from_data"):
            model.init_from_data(images[:5000])
        net = world.wrap(model)
        steps_per_epoch = len(images) // (recipe.batch_size * world.size) or 1
        optimizer, scheduler = _optimizer(model, recipe, epochs * steps_per_epoch)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        epoch_losses = []
        bar = tqdm(total=epochs * steps_per_epoch, desc="train-classifier", disable=not (progress and world.is_main))
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(images), generator=generator)
            total = 0.0
            for step in range(steps_per_epoch):
                batch = world.size * recipe.batch_size
                idx = order[step * batch:(step + 1) * batch][world.rank::world.size]
                x = images[idx]
                if recipe.augment:
                    x = flip_and_translate(x, augment_rng)
                x = x.to(device, memory_format=torch.channels_last)
                loss = loss_fn(net(x), labels[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4f}")
            epoch_losses.append(world.mean({"loss": total / steps_per_epoch})["loss"])
        bar.close()
        seconds = time.perf_counter() - start
        metrics = {
            "test_accuracy": world.share(lambda: accuracy(model, *test)),
            "train_loss_per_epoch": epoch_losses,
            "epochs": epochs,
            "seconds": round(seconds, 1),
            "seed": seed,
            "device": str(device),
            "recipe": asdict(recipe),
        }
        if world.size > 1:
            metrics.update(world_size=world.size, effective_batch_size=world.size * recipe.batch_size)
        return metrics
