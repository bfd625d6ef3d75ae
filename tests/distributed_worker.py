"""What each rank of ``torchrun --nproc-per-node 2 tests/distributed_worker.py DATA_ROOT OUT`` computes, for
tests/test_distributed.py: the World's collectives, averaged gradients through WGAN-GP's double backward, and
one step of every generator model and one epoch of a classifier through the library. Rank 0 writes what every
rank saw to OUT/worker.json; the test asserts on it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from classifiers import build_classifier
from classifiers.training import MNIST_RECIPE, train_classifier
from defense_hgan.data import load_dataset
from defense_hgan.distributed import session
from defense_hgan.gan_training import GanConfig, train_generator
from defense_hgan.generators import GENERATOR_MODELS, TEACHER_MODELS
from defense_hgan.generators.wgan_gp import Critic, gradient_penalty


def collectives(world) -> dict:
    def refuse():
        raise ValueError("rank 0 refuses")

    try:
        world.share(refuse)
        refused = None
    except ValueError as err:
        refused = str(err)

    def square_or_fail(item: int) -> tuple[int, int]:
        if item == 4:
            raise ValueError(f"item 4 fails on rank {world.rank}")
        return item * item, world.rank

    mapped = []
    try:
        for result in world.map(square_or_fail, range(6)):
            mapped.append(result)
    except ValueError as err:
        mapped.append(str(err))
    module = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(module.weight, float(world.rank))
    world.broadcast_module(module)
    return {
        "shared": world.share(lambda: f"from rank {world.rank}"),
        "refused": refused,
        "gathered": world.gather(world.rank),
        "mean": world.mean({"rank": float(world.rank), "one": 1.0}),
        "shard": list(world.shard(5)),
        "mapped": mapped,
        "rank_seed": world.rank_seed(0),
        "broadcast_weight": module.weight.sum().item(),
    }


def averaged_penalty_step(world) -> dict:
    """One SGD step of a critic on WGAN-GP's loss, each rank on its half of 4 images, against the full batch.

    Real and fake are the same images, so the penalty's random mix of them is those images whatever it draws:
    the full-batch loss is then exactly the mean of the two halves' losses.
    """
    torch.manual_seed(0)
    critic, images = Critic(width=4), torch.rand(4, 1, 28, 28)

    def loss(x):
        return critic(x).mean() + 10 * gradient_penalty(critic, x, x)

    params = list(critic.parameters())
    full = torch.autograd.grad(loss(images), params)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    world.average_gradients_before_step(optimizer)
    loss(images[2 * world.rank:2 * world.rank + 2]).backward()
    optimizer.step()
    applied = [b - p.detach() for b, p in zip(before, params)]  # lr 1: the gradient the step applied
    return {"matches_full_batch": all(torch.allclose(a, f, rtol=1e-4, atol=1e-7) for a, f in zip(applied, full)),
            "critic_weight_sum": sum(p.sum().item() for p in params)}


def library_training(world, data_root: str, out: Path) -> dict:
    losses = {}
    for model in GENERATOR_MODELS:
        config = GanConfig(model=model, steps=1, batch_size=4, out=str(out / model), data_root=data_root,
                           device="cpu", progress=False,
                           teacher_options={"nr_filters": 8, "nr_logistic_mix": 2} if model in TEACHER_MODELS else {})
        losses[model] = train_generator(config)["final_losses"]
    torch.manual_seed(0)
    classifier = build_classifier("mnist", "d")
    train = load_dataset("mnist", train=True, root=data_root)
    metrics = train_classifier(classifier, train, train, epochs=1, recipe=MNIST_RECIPE, device="cpu", seed=0,
                               progress=False)
    return {"generator_losses": losses, "classifier": metrics,
            "classifier_weight_sum": sum(p.sum().item() for p in classifier.parameters())}


def main(data_root: str, out: str) -> None:
    dist.init_process_group("gloo")  # made by the caller: the library's sessions must use it and leave it open
    with session("cpu") as world:
        seen = {**collectives(world), **averaged_penalty_step(world), **library_training(world, data_root, Path(out))}
        gathered = world.gather(seen)
    still_open = dist.is_initialized()
    dist.destroy_process_group()
    if world.is_main:
        Path(out, "worker.json").write_text(json.dumps({"ranks": gathered, "group_left_open": still_open}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
