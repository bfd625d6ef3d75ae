"""How early does the best restart lead? Every prune value replayed on one full projection's recorded errors.

``project(prune=f)`` keeps each surviving restart's descent exactly as in the
full run (tests/test_projection.py), so the full L x R projection's error of
every restart at every step decides what any prune value returns: at each
rung the restarts with the lowest error at that step survive, and the survivor
with the lowest final error is returned. On the first --n MNIST test images,
clean and oblivious FGSM, this records those errors (a hook on the generator)
and every restart's final defended prediction, one full projection per chunk
with the chunks and seed of restart_pruning.py (whose pruned runs then return
what this predicts, up to float rounding), and reports:

  replay  per --prune value: the latent-steps ratio, how often it returns the
          full run's restart and its prediction (95% Wilson interval), and
          its defended accuracy; then the same for single cuts (keep the best
          k restarts after step t, for a few t and k), which project() does
          not offer: a check that no one cut beats the halvings;
  ranks   at a few steps, how often the full run's final best restart is
          then the best, or in the better half, of the image's R restarts.

It costs one full projection of the images; restart_pruning.py times real runs.

    python benchmarks/restart_ranks.py --data-root data --n 100 --prune 0.05,0.1,0.2,0.3,0.4
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch

from adversarial_fit import predictions
from defense_hgan import project
from defense_hgan.scoring import proportion_text
from defense_hgan.projection import best_restarts, halving_rungs, restart_mse
from measure import markdown_table, write_report
from restart_pruning import SETS, halvings, parser_of, run_chunks, settings_of

RESULTS = Path(__file__).resolve().parent / "results" / "restart_ranks.md"
RANK_STEPS = (10, 20, 40, 80, 120, 160)
ONE_RUNG_STEPS, ONE_RUNG_KEPT = (5, 10, 20, 40), (2, 3, 4, 5)
REPLAY_COLUMNS = ["images", "variant", "n", "latent-steps ratio", "same restart as full",
                  "prediction agrees with full (95% Wilson)", "defended accuracy, full", "defended accuracy, pruned"]


def record_chunk(generator, classifier, images: dict, args) -> dict:
    """Per set: errors (B, R, L) of every restart at every step, final errors (B, R), final predictions (B, R)."""
    record = {}
    for name, x in images.items():
        errors, last = [], []  # errors of each generator call (one per step, then one scoring the final latents)

        def keep(module, inputs, output):
            errors.append(restart_mse(output.detach().float(), x, args.R))
            last[:] = [output.detach().float()]

        hook = generator.register_forward_hook(keep)
        try:  # max_batch: every restart of the chunk in one call, so each call is one step
            project(generator, x, args.L, args.R, seed=args.seed, max_batch=len(x) * args.R)
        finally:
            hook.remove()
        errors = torch.stack(errors, 2)  # (B, R, L + 1)
        record[name] = {"errors": errors[:, :, :-1].cpu(), "final": errors[:, :, -1].cpu(),
                        "predictions": predictions(classifier, last[0]).view(len(x), args.R).cpu()}
    return record


def replay(errors: torch.Tensor, final: torch.Tensor, rungs: dict[int, int]) -> tuple[torch.Tensor, int]:
    """(restart returned (B,), latent-steps per image) of a run pruned at ``rungs``, from the full run's errors."""
    b, r, L = errors.shape
    alive, work, last = torch.arange(r).expand(b, r), 0, 0  # alive: (B, restarts left), restart indices
    for step, keep in rungs.items():
        work, last = work + alive.shape[1] * (step - last), step
        alive = alive.gather(1, best_restarts(errors[:, :, step - 1].gather(1, alive), keep))
    work += alive.shape[1] * (L - last + 1)  # the steps left and the final scoring call
    return alive.gather(1, final.gather(1, alive).argmin(1, keepdim=True))[:, 0], work


def joined(chunks: list[dict], labels: torch.Tensor, names: tuple[str, ...]) -> dict:
    """The records of ``names`` over every chunk as single tensors, with the images' labels."""
    parts = [(chunk[name], labels[chunk["start"] : chunk["start"] + len(chunk[name]["final"])])
             for chunk in chunks for name in names]
    return {key: torch.cat([part[key] for part, _ in parts]) for key in ("errors", "final", "predictions")} | {
        "labels": torch.cat([truth for _, truth in parts])}


def replay_row(title: str, data: dict, variant: str, rungs: dict[int, int]) -> list:
    """One replayed variant (``rungs``: {step: restarts kept}) against the full run on ``data``'s images."""
    full, full_work = replay(data["errors"], data["final"], {})
    pruned, work = replay(data["errors"], data["final"], rungs)
    chosen = data["predictions"].gather(1, torch.stack([full, pruned], 1))  # (N, 2): predictions of each
    n, agree = len(chosen), int((chosen[:, 0] == chosen[:, 1]).sum())
    accuracy = (chosen == data["labels"][:, None]).float().mean(0)
    return [title, variant, n, f"{full_work / work:.2f}x", f"{(full == pruned).float().mean():.3f}",
            proportion_text(agree, n), f"{accuracy[0]:.3f}", f"{accuracy[1]:.3f}"]


def rank_row(title: str, data: dict) -> list:
    best = data["final"].argmin(1, keepdim=True)
    row = [title, len(best)]
    for step in (s for s in RANK_STEPS if s <= data["errors"].shape[2]):
        rank = (data["errors"][:, :, step - 1] < data["errors"][:, :, step - 1].gather(1, best)).sum(1)
        row.append(f"{(rank == 0).float().mean():.2f} / {(rank < data['errors'].shape[1] / 2).float().mean():.2f}")
    return row


def report(chunks: list[dict], labels: torch.Tensor, settings: dict, prune: list[float], argv: list[str]) -> str:
    groups = {name: joined(chunks, labels, (name,)) for name in SETS} | {"both": joined(chunks, labels, SETS)}
    L, R = settings["L"], settings["R"]
    return "\n".join([
        "# Restart pruning replayed on the full projection's recorded errors\n",
        f"Machine: {settings['machine']}. Generator `{settings['generator']}` (sha256 "
        f"{settings['generator_sha256'][:12]}), classifier `{settings['classifier']}`; the first "
        f"{len(groups['clean']['final'])} MNIST test images (of --n {settings['n']}), clean and oblivious FGSM "
        f"(eps 0.3, crafted once against the bare classifier); the full projection L={L}, R={R}, seed "
        f"{settings['seed']} for each chunk of {settings['chunk']} images. "
        f"Made by `{shlex.join(['python', 'benchmarks/restart_ranks.py', *argv])}`.\n",
        "## Replay: what each prune value would return\n",
        *[f"- `prune={p}`: {halvings(halving_rungs(p, L, R), R)}" for p in prune], "",
        *markdown_table(REPLAY_COLUMNS,
                        [replay_row(title, data, f"prune={p}", halving_rungs(p, L, R))
                         for p in prune for title, data in groups.items()]),
        "## Replay: one rung, the best k of the restarts kept after step t\n",
        "Not an option of `project`: a check that no single cut does better than the halvings. Clean and FGSM "
        "images together.\n",
        *markdown_table(REPLAY_COLUMNS,
                        [replay_row("both", groups["both"], f"keep {k} after step {t}", {t: k})
                         for t in ONE_RUNG_STEPS if t < L for k in ONE_RUNG_KEPT if k < R]),
        "## Ranks: is the full run's final best restart already leading?\n",
        f"At each step: the fraction of images whose final best restart is then the best / in the better half "
        f"of the {R}.\n",
        *markdown_table(["images", "n", *[f"step {s}" for s in RANK_STEPS if s <= L]],
                        [rank_row(title, data) for title, data in groups.items()]),
    ])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__.splitlines()[0], RESULTS)
    parser.set_defaults(prune=[0.05, 0.1, 0.2, 0.3, 0.4])
    args = parser.parse_args(argv)
    settings = {key: value for key, value in settings_of(args).items() if key != "prune"}  # replayed, not run
    chunks, labels = run_chunks(args, settings, lambda generator, classifier, images: record_chunk(
        generator, classifier, images, args), "restart_ranks")
    write_report(report(chunks, labels, settings, args.prune, argv), args.out)


if __name__ == "__main__":
    main()
