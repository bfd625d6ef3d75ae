"""Figures for the notebooks: a sweep's HGAN Figure 5 panels and time cost, and reconstructions.

Every function returns a matplotlib Figure, so notebooks stay a line per
figure and tests check the same code.
"""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from defense_hgan.sweep import read_sweep as load_sweep  # the rows of OUT/sweep.csv, one dict per cell


def figure5(rows: list[dict], L: int = 100, R: int = 10, title: str | None = None):
    """HGAN Figure 5: defended accuracy vs L at R = ``R`` and vs R at L = ``L``, one colour per generator.

    Solid lines are the attacked images, dashed the clean ones; grey lines are
    the bare classifier (its attacked accuracy only under the oblivious threat,
    where it is one number). A fixed value missing from the grid is replaced by
    the nearest one swept, and the panel's title says which.
    """
    fig, axes = plt.subplots(1, 2, figsize=(14, 4), sharey=True, layout="constrained")
    R = _nearest([row["R"] for row in rows], R)
    L = _nearest([row["L"] for row in rows], L)
    for ax, (x, fixed, value) in zip(axes, (("L", "R", R), ("R", "L", L))):
        for color, (label, cells) in zip(_colors(), _by_generator(rows).items()):
            cells = sorted((row for row in cells if row[fixed] == value), key=lambda row: row[x])
            xs = [row[x] for row in cells]
            ax.plot(xs, [row["accuracy_attacked_defended"] for row in cells], "o-", color=color,
                    label=f"{label}, {rows[0]['attack']}")
            ax.plot(xs, [row["accuracy_clean_defended"] for row in cells], "o--", color=color, label=f"{label}, clean")
        ax.axhline(rows[0]["accuracy_clean_undefended"], color="grey", ls=":", label="no defense, clean")
        if rows[0]["threat"] == "oblivious":
            ax.axhline(rows[0]["accuracy_attacked_undefended"], color="grey", ls="-.",
                       label=f"no defense, {rows[0]['attack']}")
        ax.set(xscale="log", xlabel=f"{x} ({'steps' if x == 'L' else 'restarts'})", title=f"{fixed} = {value}",
               ylim=(-0.02, 1.02))
        ax.set_xticks(sorted({row[x] for row in rows}), [str(v) for v in sorted({row[x] for row in rows})])
        ax.minorticks_off()
    axes[0].set_ylabel("accuracy")
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize="small", loc="outside right center")  # off the lines
    fig.suptitle(title or _describe(rows))
    return fig


def time_figure(rows: list[dict], title: str | None = None):
    """Time cost of each setting: seconds per image of the clean projection vs L x R, one line per generator."""
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for color, (label, cells) in zip(_colors(), _by_generator(rows).items()):
        cells = sorted(cells, key=lambda row: (row["L"] * row["R"], row["L"]))
        ax.plot([row["L"] * row["R"] for row in cells], [row["projection_seconds"] / row["n"] for row in cells],
                "o-", color=color, label=label)
    ax.set(xscale="log", yscale="log", xlabel="L x R (generator passes per image)", ylabel="seconds per image",
           title=title or f"projection time, {rows[0]['dataset']}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize="small")
    return fig


def cost_table(rows: list[dict]) -> str:
    """A plain-text table of every cell: accuracies, projection MSE and seconds per image."""
    header = ("generator", "L", "R", "clean", rows[0]["attack"], "mse", "s/image")
    lines = [(label, str(row["L"]), str(row["R"]), f"{row['accuracy_clean_defended']:.3f}",
              f"{row['accuracy_attacked_defended']:.3f}", f"{row['projection_mse']:.4f}",
              f"{row['projection_seconds'] / row['n']:.4f}")
             for label, cells in _by_generator(rows).items()
             for row in sorted(cells, key=lambda row: (row["L"], row["R"]))]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header, *lines])


def show_reconstructions(originals, reconstructions, labels=None, predictions=None, columns: int = 8):
    """Originals (top) over their projections (bottom), ``columns`` images; titles label / prediction when given."""
    originals, reconstructions = _as_images(originals[:columns]), _as_images(reconstructions[:columns])
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3), squeeze=False, layout="constrained")
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            ax = axes[row, i]
            ax.imshow(images[i], cmap="gray" if images[i].ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        if labels is not None:
            axes[0, i].set_title(f"label {int(labels[i])}", fontsize="small")
        if predictions is not None:
            axes[1, i].set_title(f"pred {int(predictions[i])}", fontsize="small")
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("projection")
    return fig


def _as_images(batch) -> np.ndarray:
    """NCHW tensors or arrays in [0, 1] -> (N, H, W) or (N, H, W, C) numpy for imshow."""
    array = np.asarray(batch.detach().cpu() if hasattr(batch, "detach") else batch, dtype=np.float32)
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def _by_generator(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by generator, in first-seen order, labelled by model (plus the path when models repeat)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["generator"], []).append(row)
    models = [cells[0]["generator_model"] for cells in groups.values()]
    return {(model if models.count(model) == 1 else f"{model} ({path})"): cells
            for model, (path, cells) in zip(models, groups.items())}


def _nearest(values: list[int], wanted: int) -> int:
    return min(sorted(set(values)), key=lambda value: (abs(value - wanted), value))


def _colors():
    return plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10


def _describe(rows: list[dict]) -> str:
    first = rows[0]
    return (f"{first['dataset']}: {first['attack']} ({first['threat']}), n = {first['n']}, "
            f"classifier {os.path.basename(os.path.dirname(first['classifier'])) or first['classifier']}")
