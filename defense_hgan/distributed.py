"""Data-parallel runs under ``torchrun``: who this process is, its device, and the few collectives the library uses.

``torchrun --nproc-per-node N -m -- defense_hgan COMMAND ...`` starts N copies of
a command with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in
their environment. ``session(device)`` reads them, joins the process group
(NCCL on CUDA, gloo on CPU) and yields a ``World``: this process's rank, the
number of ranks, its device (``cuda:LOCAL_RANK`` on GPUs) and collectives.
Without torchrun (or with one process) the world has one rank, every
collective returns its input untouched and no process group is made, so a
single-process run computes exactly what it did before this module existed.

Rules the library follows under N ranks:
    - rank 0 alone writes files and takes the output folder's lock; what it
      decides (a refusal, a checkpoint it read) reaches every rank through
      ``World.share``, so a refusal stops all ranks, not rank 0 alone;
    - every rank starts from the same weights and averages gradients before
      each optimizer step, so the weights stay identical on every rank;
    - each rank samples (batches, noise) from ``World.rank_seed(seed)``, its
      own stream, and per-item randomness that must not depend on how items
      are spread over ranks comes from ``derived_seed(seed, index)``;
    - ``evaluate`` and ``sweep`` share out whole units of work (a chunk of
      images, a cell of the grid) with ``World.map``; each unit seeds itself
      as in a single process, so N ranks write a single process's numbers.
"""
from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from defense_hgan.devices import resolve_device

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Launch:
    """What torchrun told this process: its rank among ``size`` and its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def launch_environment(environ=None) -> Launch:
    """This process's place in a torchrun launch, read from the environment; one rank of one without torchrun.

    A launch that is half set (some of RANK, WORLD_SIZE, LOCAL_RANK, or a
    world of several ranks without MASTER_ADDR / MASTER_PORT) is refused:
    guessing the rest would start ranks that wait for each other forever.
    """
    environ = os.environ if environ is None else environ
    given = [name for name in LAUNCH_VARIABLES if environ.get(name, "") != ""]
    if not given:
        return Launch()
    missing = [name for name in LAUNCH_VARIABLES if name not in given]
    if missing:
        raise ValueError(f"the torchrun environment is half set: {', '.join(f'{n}={environ[n]}' for n in given)} "
                         f"but not {', '.join(missing)}; launch with torchrun (which sets all of them), "
                         f"or unset {', '.join(given)} to run one process")
    values = {}
    for name in LAUNCH_VARIABLES:
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise ValueError(f"the torchrun environment has {name}={environ[name]!r}; expected an integer") from None
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if launch.size < 1 or not 0 <= launch.rank < launch.size or launch.local_rank < 0:
        raise ValueError(f"the torchrun environment is inconsistent: RANK={launch.rank}, WORLD_SIZE={launch.size}, "
                         f"LOCAL_RANK={launch.local_rank}; expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    unset = [name for name in RENDEZVOUS_VARIABLES if not environ.get(name)]
    if launch.size > 1 and unset:
        raise ValueError(f"WORLD_SIZE={launch.size} but {' and '.join(unset)} is not set, so the ranks cannot "
                         f"find each other; launch with torchrun, which sets it")
    return launch


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not launched by torchrun): the one that writes and prints."""
    return launch_environment().rank == 0


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for the stream named by ``keys`` (a rank, an image's index, ...), independent of the other streams.

    Made with NumPy's SeedSequence, which spreads nearby keys far apart, so
    (seed, rank 1) and (seed + 1, rank 0) are unrelated streams. The number of
    keys goes in too: SeedSequence reads trailing zeros as absent, (0, 1, 0) as (0, 1).
    """
    return int(np.random.SeedSequence([int(seed), len(keys), *map(int, keys)]).generate_state(1, np.uint32)[0])


@dataclass(frozen=True)
class World:
    """The ranks of one run and this process's place among them. Every method is a collective under N > 1 ranks:
    all ranks must call it, in the same order."""

    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's sampling: ``seed`` itself in a single process, a stream per rank otherwise."""
        return int(seed) if self.size == 1 else derived_seed(seed, self.rank)

    def shard(self, n: int) -> range:
        """The indices of ``n`` items that this rank handles: every size-th from its rank (balanced within one)."""
        return range(self.rank, int(n), self.size)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def share(self, fn):
        """Run ``fn()`` on rank 0 alone; every rank returns its result, or raises the exception it raised."""
        if self.size == 1:
            return fn()
        outcome = [_outcome(fn) if self.is_main else None]
        dist.broadcast_object_list(outcome, src=0)
        return _unwrap(outcome[0])

    def map(self, fn, items):
        """``fn(item)`` for every item, yielded in the items' order on every rank, each item computed on one rank.

        The items go a round of ``size`` at a time, item i of a round to rank i
        (``shard``); every rank receives the round's results before the next
        round starts, so a caller that saves each result as it comes saves the
        same prefix on every rank. A single process computes each item as the
        generator is read, as ``map`` does. An exception on any rank is raised on
        every rank at the end of its round, so none waits for the others forever.
        """
        if self.size == 1:
            yield from map(fn, items)
            return
        items = list(items)
        for start in range(0, len(items), self.size):
            round_items = items[start : start + self.size]
            mine = [_outcome(fn, round_items[i]) for i in self.shard(len(round_items))]
            for outcome in [outcome for outcomes in self.gather(mine) for outcome in outcomes]:  # in rank order
                yield _unwrap(outcome)

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        gathered = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (the same names on every rank); a single process gets ``values`` back."""
        if self.size == 1:
            return values
        total = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return dict(zip(values, (total / self.size).tolist()))

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into ``module`` on every rank (what DDP does when it wraps)."""
        if self.size > 1:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients_before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Make every ``optimizer.step()`` first replace its parameters' gradients by their mean over the ranks.

        The GAN steps need this rather than DistributedDataParallel: ARGAN sets
        ``.grad`` itself from ``torch.autograd.grad`` (which DDP does not see),
        WGAN-GP's penalty backpropagates through a gradient (DDP refuses or
        averages wrongly, pytorch/pytorch#63812, #47562), and G's update
        backpropagates through D without stepping it. Averaging at the step is
        right for all of them: one all-reduce of the gradients that will be
        applied, whatever made them. Gradients left None are skipped, on every
        rank alike, as the code paths are the same.
        """
        if self.size == 1:
            return

        def average(opt, args, kwargs):
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            if not grads:
                return
            flat = torch.cat([grad.reshape(-1) for grad in grads])  # one all-reduce, not one per tensor
            dist.all_reduce(flat)
            flat /= self.size
            for grad, mean in zip(grads, flat.split([grad.numel() for grad in grads])):
                grad.copy_(mean.view_as(grad))

        optimizer.register_step_pre_hook(average)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel under N > 1 ranks (itself otherwise), for one-loss, one-backward training.

        Save the unwrapped ``module``: its state dict has no ``module.`` prefix and loads like a single-process one.
        """
        if self.size == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


@contextmanager
def session(device: str | torch.device = "auto"):
    """Join torchrun's process group for the ``with`` block (leaving it after) and yield this process's ``World``.

    Under several ranks, "auto" and "cuda" mean ``cuda:LOCAL_RANK`` (one GPU per
    process); the backend is NCCL on CUDA, gloo on CPU. A process group that
    the caller already made is used and left alone.
    """
    launch = launch_environment()
    device = _rank_device(device, launch)
    if launch.size == 1:
        yield World(0, 1, 0, device)
        return
    made_here = not dist.is_initialized()
    if made_here:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=launch.rank, world_size=launch.size)
    try:
        yield World(launch.rank, launch.size, launch.local_rank, device)
        if made_here:
            dist.barrier()  # leave together: a rank tearing gloo down while another still talks to it can abort
    finally:
        if made_here:
            dist.destroy_process_group()


def _rank_device(device: str | torch.device, launch: Launch) -> torch.device:
    resolved = resolve_device(device)
    if launch.size == 1 or resolved.type != "cuda":
        return resolved
    if resolved.index is not None:
        raise ValueError(f"--device {device} names one GPU, but this is rank {launch.rank} of {launch.size}: "
                         f"under torchrun each process takes the GPU of its LOCAL_RANK; pass --device cuda or auto")
    if launch.local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {launch.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                         f"start at most that many processes per node (--nproc-per-node)")
    return torch.device("cuda", launch.local_rank)


def _outcome(fn, *args) -> tuple[bool, object]:
    """(True, ``fn(*args)``), or (False, the exception it raised) to raise on every rank: a rank that raised alone
    would leave the others waiting for it forever."""
    try:
        return True, fn(*args)
    except Exception as err:
        return False, _picklable(err)


def _unwrap(outcome: tuple[bool, object]):
    succeeded, value = outcome
    if not succeeded:
        raise value
    return value


def _picklable(err: Exception) -> Exception:
    """``err`` if it can travel to the other ranks, else a RuntimeError that carries its type and message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
