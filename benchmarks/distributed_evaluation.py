"""Evaluation throughput on one CPU: 2 processes x 1 thread (torchrun, gloo) against 1 process x 2 threads.

Both run ``evaluation.evaluate`` of the same Defense-GAN (--L steps, --R
restarts, seed 0) on the same first --images test images, with the same rows (by
default the no-attack row and FGSM under the oblivious threat, so each image
is projected twice), in chunks of n/2: the two ranks take one chunk each, the
single process runs the same two chunks in turn with two threads. They
therefore compute the same numbers, which is checked (the run stops if not).
Each launch is timed between barriers, from the first chunk to the results
(wall and CPU seconds, the CPU seconds summed over the ranks); the whole
command, with its imports, model loading and the launch, is timed apart.
The two configurations alternate, --repeats times, so drifting load hits both.

The table gives images per second (n over the evaluation's wall seconds),
CPU seconds per image, and the ratio of 2 x 1's images per second to 1 x 2's,
with the CPU and the load average before and after the runs: wall times on a
loaded machine say little, so run it on a quiet one:

    python benchmarks/distributed_evaluation.py --images 20 --L 50 --R 10 --repeats 3

(writes benchmarks/results/distributed_evaluation.md; needs zoo/ and data/ as committed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # measure.py, when run as a script or under torchrun
from measure import machine, markdown_table, write_report  # noqa: E402

from defense_hgan import gan_defense, load_classifier, load_dataset  # noqa: E402
from defense_hgan.distributed import LAUNCH_VARIABLES, session  # noqa: E402
from defense_hgan.evaluation import evaluate  # noqa: E402
from defense_hgan.generator_io import load_generator  # noqa: E402

CONFIGURATIONS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}  # name -> (processes, threads)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generator", default="zoo/mnist-wgan-gp/generator.pt")
    parser.add_argument("--classifier", default="zoo/mnist-a/classifier.pt")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--images", type=int, default=20, help="test images, n (two chunks of n/2); not --n, which "
                        "torchrun's parser reads as an ambiguous abbreviation of its own flags")
    parser.add_argument("--L", type=int, default=50)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--attacks", default="fgsm")
    parser.add_argument("--threats", default="oblivious")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--note", default="", help="a line the report starts with (e.g. the machine's load)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distributed_evaluation.md"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one launch's result file
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One launch (one rank of it): evaluate the first n images, timed between barriers; rank 0 writes the result."""
    with session("cpu") as world:
        images, labels = load_dataset(args.dataset, train=False, root=args.data_root)
        defense = gan_defense(load_generator(args.generator, world.device), args.L, args.R, seed=0)
        classifier = load_classifier(args.classifier, world.device)
        world.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        n = args.images
        results = evaluate(classifier, defense, images[:n], labels[:n], dataset=args.dataset, attacks=args.attacks,
                           threats=args.threats, chunk=-(-n // 2), seed=0, progress=False)
        cpu = sum(world.gather(time.process_time() - cpu))
        world.barrier()
        wall = time.perf_counter() - wall
    if world.is_main:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in results["rows"]]
        args.worker.write_text(json.dumps({"wall": wall, "cpu": cpu, "rows": rows, "machine": machine(world.device),
                                           "threads": torch.get_num_threads(), "processes": world.size}))


def launch(args: argparse.Namespace, processes: int, threads: int, result: Path) -> dict:
    """Run one configuration as its own command; its worker's result with the whole command's wall seconds."""
    python = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    flags = ["--generator", args.generator, "--classifier", args.classifier, "--dataset", args.dataset,
             "--data-root", args.data_root, "--images", args.images, "--L", args.L, "--R", args.R,
             "--attacks", args.attacks, "--threats", args.threats]
    env = {name: value for name, value in os.environ.items() if name not in LAUNCH_VARIABLES}
    start = time.perf_counter()
    subprocess.run([*python, __file__, *map(str, flags), "--worker", str(result)], check=True,
                   env={**env, "OMP_NUM_THREADS": str(threads)})
    return {**json.loads(result.read_text()), "command": time.perf_counter() - start}


def report(args: argparse.Namespace, runs: dict[str, list[dict]], loads: tuple) -> str:
    """The markdown table: per configuration, medians over the repeats, and the ratio to the first configuration."""
    first = next(iter(runs))
    rate = {name: args.images / statistics.median(run["wall"] for run in done) for name, done in runs.items()}
    rows = [[name, done[0]["processes"], done[0]["threads"], f"{statistics.median(r['wall'] for r in done):.1f}",
             f"{rate[name]:.3f}", f"{statistics.median(r['cpu'] for r in done) / args.images:.2f}",
             f"{statistics.median(r['command'] for r in done):.1f}", f"{rate[name] / rate[first]:.2f}"]
            for name, done in runs.items()]
    settings = (f"{args.images} {args.dataset} test images, Defense-GAN L={args.L}, R={args.R} "
                f"({Path(args.generator).parent.name}, {Path(args.classifier).parent.name}), "
                f"rows: no attack and {args.attacks} under {args.threats}, chunks of {-(-args.images // 2)}")
    lines = ["# Evaluation: 2 processes x 1 thread against 1 process x 2 threads", ""]
    lines += [args.note, ""] if args.note else []
    lines += [f"{settings}; medians of {args.repeats} alternating run(s). CPU: "
              f"{runs[first][0]['machine']} (as the 1-process run saw it). Load average (1 min) "
              f"{loads[0]:.2f} before, {loads[1]:.2f} after. Both configurations gave the same rows.", ""]
    lines += markdown_table(["configuration", "processes", "threads", "evaluation s (wall)", "images/s",
                             "CPU s per image", "whole command s", f"images/s ratio to {first}"], rows)
    lines += ["Reproduce: `python benchmarks/distributed_evaluation.py "
              f"--images {args.images} --L {args.L} --R {args.R} --repeats {args.repeats}`", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args)
    runs = {name: [] for name in CONFIGURATIONS}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = list(CONFIGURATIONS) if repeat % 2 == 0 else list(reversed(CONFIGURATIONS))
            for name in order:
                runs[name].append(launch(args, *CONFIGURATIONS[name], Path(tmp) / f"{repeat}-{len(runs[name])}.json"))
    loads.append(os.getloadavg()[0])
    rows = {json.dumps(run["rows"], sort_keys=True) for done in runs.values() for run in done}
    if len(rows) != 1:
        raise SystemExit(f"the configurations gave different rows: {sorted(rows)}")
    write_report(report(args, runs, tuple(loads)), args.out)


if __name__ == "__main__":
    main()
