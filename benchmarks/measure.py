"""What every benchmark here shares: a timer that waits for the GPU, the machine's name, the report writer,
and the arguments of the benchmarks that score generator checkpoints against a classifier."""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch


def timed(fn, device: torch.device):
    """(result, seconds), synchronising the GPU around the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, cores, torch threads and vector capability."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"{torch.backends.cpu.get_cpu_capability()}")


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A GitHub markdown table as lines, followed by a blank line."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""])


def write_report(report: str, out: Path) -> None:
    """Save a benchmark's markdown report (making its folder) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)


def generator_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the generator checkpoints, the classifier, the dataset, its root and the device."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("generators", nargs="+", help="generator checkpoints (train-generator's OUT/generator.pt)")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser
