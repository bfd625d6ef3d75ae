"""Where a generator training step's time goes: torch.profiler over a few steps of each model, by phase and by op.

The step is ``build_training(model, "mnist").step``, what ``train-generator``
runs, on MNIST-shaped batches drawn from one in-memory tensor, at --threads
torch threads (the long runs use one each). Every op's self CPU time is put
in one phase:

  forward: NET        inside the forward of that network or of one of its direct children (NET.child)
  backward: NET       autograd's backward of the ops that forward recorded
  backward, create_graph: NET   the same, kept differentiable (WGAN-GP's penalty takes grad_x D(x) this way)
  double backward: NET  the backward of that create_graph pass (the penalty's gradient for D's weights)
  optimizer step / zero_grad, data (drawing the real batch), other (noise, losses, glue)

Backward ops are matched to their forward op by autograd's sequence number,
so the phases need no change to the training code. --options profiles rows of
``generator_step.OPTIONS`` too (by default WGAN-GP's critic as it was, with
nn.LeakyReLU, whose double backward made a pass of zeros).

Reproduce (writes benchmarks/results/generator_step_profile.md):

    python benchmarks/generator_profile.py
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from defense_hgan.generators import build_training
from generator_step import OPTIONS, option_names, random_batches
from measure import machine, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "generator_step_profile.md"
FORWARD = "forward: "
BACKWARD = "autograd::engine::evaluate_function: "


@contextlib.contextmanager
def forward_scopes(networks: dict[str, nn.Module]):
    """Label the forward of every network and of its direct children with a profiler scope "forward: NET[.child]"."""
    handles = []

    def label(module: nn.Module, name: str) -> None:
        scopes = []
        enter = lambda *_: scopes.append(record_function(FORWARD + name).__enter__())  # noqa: E731
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(lambda *_: scopes.pop().__exit__(None, None, None)))

    for name, net in networks.items():
        label(net, name)
        for child_name, child in net.named_children():
            label(child, f"{name}.{child_name}")
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _ancestors(event):
    while event is not None:
        yield event
        event = event.cpu_parent


def phases(events) -> dict[str, float]:
    """Self CPU microseconds by phase (see the module docstring), over every profiled event."""
    creator = {}  # sequence number -> the forward op that made that autograd node (the last op recorded with it)
    for event in sorted(events, key=lambda e: e.time_range.start):
        node = next((a for a in _ancestors(event) if a.name.startswith(BACKWARD)), None)
        if event.sequence_nr >= 0 and (node is None or node.sequence_nr != event.sequence_nr):
            creator[event.sequence_nr] = event  # not the backward node itself, which carries its forward op's number
    differentiable = {ancestor.id for event in creator.values() for ancestor in _ancestors(event.cpu_parent)
                      if ancestor.name.startswith(BACKWARD)}  # backward nodes that recorded a graph themselves
    memo = {}

    def phase(event) -> str:
        if event.id in memo:
            return memo[event.id]
        label = "other (noise, losses, glue)"
        for ancestor in _ancestors(event):
            name = ancestor.name
            if name.startswith(BACKWARD):
                origin = creator.get(ancestor.sequence_nr)
                if origin is None:  # AccumulateGrad: adding a gradient into a parameter's .grad
                    label = "gradient accumulation"
                    break
                source = phase(origin)
                if source.startswith("backward"):
                    label = "double backward: " + source.split(": ", 1)[1]
                elif source.startswith(FORWARD):
                    kind = "backward, create_graph: " if ancestor.id in differentiable else "backward: "
                    label = kind + source[len(FORWARD):]
                else:
                    label = "backward: " + source
                break
            if name.startswith("Optimizer.step"):
                label = "optimizer step"
                break
            if name.startswith("Optimizer.zero_grad"):
                label = "zero_grad"
                break
            if name.startswith(FORWARD) or name == "data":
                label = name
                break
        memo[event.id] = label
        return label

    totals = defaultdict(float)
    for event in events:
        totals[phase(event)] += event.self_cpu_time_total
    return dict(totals)


def profile_model(model: str, batches, steps: int, warmup: int, option: str | None = None):
    """(self CPU us by phase, key averages) over ``steps`` profiled steps of ``model``, changed by ``option``."""
    training = build_training(model, "mnist")
    if option is not None:
        OPTIONS[option][-1](training)

    def labelled_batch():
        with record_function("data"):
            return batches()

    for _ in range(warmup):
        training.step(training.networks, training.optimizers, batches)
    with forward_scopes(training.networks), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            training.step(training.networks, training.optimizers, labelled_batch)
    return phases(prof.events()), prof.key_averages()


def model_report(model: str, by_phase: dict[str, float], ops, steps: int, top: int) -> list[str]:
    total = sum(by_phase.values())
    per_step = lambda us: f"{us / steps / 1000:.1f}"
    share = lambda us: f"{100 * us / total:.1f}%"
    phase_rows = [[name, per_step(us), share(us)] for name, us in sorted(by_phase.items(), key=lambda kv: -kv[1])]
    op_rows = [[f"`{op.key}`", op.count // steps, per_step(op.self_cpu_time_total), share(op.self_cpu_time_total)]
               for op in sorted(ops, key=lambda op: -op.self_cpu_time_total)[:top]]
    return [
        f"## {model}\n",
        f"Self CPU time per step: {per_step(total)} ms.\n",
        *markdown_table(["phase", "ms per step", "share"], phase_rows),
        *markdown_table(["op (self time)", "calls per step", "ms per step", "share"], op_rows),
    ]


def run(args) -> str:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    batches = random_batches(args.batch_size)
    sections = []
    for model in args.models:
        variants = [(model, None)] + [(f"{model}, {OPTIONS[option][0]}", option) for option in args.options
                                      if model in OPTIONS[option][2]]
        for name, option in variants:
            print(f"[{time.strftime('%H:%M:%S')}] profiling {name}", flush=True)
            by_phase, ops = profile_model(model, batches, args.steps, args.warmup, option)
            sections += model_report(name, by_phase, ops, args.steps, args.top)
    return "\n".join([
        "# Generator training step profile\n",
        f"Machine: {machine(torch.device('cpu'))}; torch {torch.__version__}. MNIST-shaped batches of "
        f"{args.batch_size}, fp32, default model sizes; {args.steps} profiled steps after {args.warmup} warm-up "
        f"steps, seed {args.seed}. Times are torch.profiler's self CPU time (its own overhead included) on a "
        f"machine shared with other jobs: read the shares, not the absolute times. "
        f"Made by `{' '.join(['python benchmarks/generator_profile.py', *args.argv])}`.\n",
        *sections,
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dcgan,wgan-gp,s-argan", help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=12, help="ops listed per model")
    parser.add_argument("--options", default="torch-leaky-relu",
                        help="comma-separated names of generator_step.OPTIONS, or all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.models = [m for m in args.models.split(",") if m]
    args.options = option_names(args.options, parser)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
