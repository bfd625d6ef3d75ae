"""Restart pruning against Defense-GAN's full projection: the same defended predictions for less time?

On the first --n MNIST test images, clean and under oblivious FGSM (eps 0.3,
the attacks package's default, crafted once with ART against the bare
classifier), every chunk of --chunk images is projected side by side in one
run: "full" (L=200, R=10, Defense-GAN's) and, for each value of --prune, the
same with ``project(prune=...)`` (successive halving of the restarts). Per set
and prune value it reports each one's defended accuracy, the fraction of
images whose defended prediction agrees with the full run's (95% Wilson
interval), how often the pruned run returned the full run's latent, the mean
projection MSE, the projection seconds and their ratio, and the ratio of
latent-steps run through the generator (counted with a hook). The issue's bar:
>= 99% agreement at >= 3x less time.

Each finished chunk is saved atomically to --state; rerunning the same command
resumes there (a state made with other settings is refused).

    python benchmarks/restart_pruning.py --data-root data            # 500 images, 3 prune values
    python benchmarks/restart_pruning.py --data-root data --generator zoo/mnist-wgan-gp/generator.pt \\
        --out benchmarks/results/restart_pruning_wgan_gp.md
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adversarial_fit import predictions
from defense_hgan import load_classifier, load_dataset, load_generator, project
from defense_hgan.atomic import atomic_write
from defense_hgan.checkpoints import file_sha256
from defense_hgan.evaluation import craft
from defense_hgan.scoring import difference_interval, difference_text, interval_text, wilson_interval
from defense_hgan.projection import check_prune, halving_rungs
from measure import machine, markdown_table, timed, write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "restart_pruning.md"
GENERATOR = ROOT / "zoo" / "training" / "mnist-dcgan" / "step_010000.pt"  # the best-defending trained generator
CLASSIFIER = ROOT / "zoo" / "mnist-a" / "classifier.pt"
SETS = ("clean", "fgsm")
SAME_LATENT = 1e-3  # max |z_full - z_pruned| below which both returned the same restart


def project_counted(generator, images, options: dict, device) -> tuple:
    """(projection, seconds, latent-steps): one projection timed, the latents through the generator counted."""
    counted = []
    hook = generator.register_forward_pre_hook(lambda module, inputs: counted.append(len(inputs[0])))
    try:
        result, seconds = timed(lambda: project(generator, images, **options), device)
    finally:
        hook.remove()
    return result, seconds, sum(counted)


def measure_chunk(generator, classifier, images: dict, args, device) -> dict:
    """Every variant's projection of one chunk's clean and FGSM images: predictions, errors, seconds, work.

    {set: {variant: {...}}}: "full", "prune=P" for each P in --prune, and with --other-seed "seed=S+1".
    """
    full = {"L": args.L, "R": args.R, "seed": args.seed}
    variants = {"full": full} | {f"prune={p}": {**full, "prune": p} for p in args.prune}
    if args.other_seed:
        variants[f"seed={args.seed + 1}"] = {**full, "seed": args.seed + 1}
    record = {}
    for name in SETS:
        record[name], full_z = {}, None
        for variant, options in variants.items():
            result, seconds, latent_steps = project_counted(generator, images[name], options, device)
            full_z = result.z if full_z is None else full_z
            record[name][variant] = {"predictions": predictions(classifier, result.images).tolist(),
                                     "errors": result.error.tolist(), "seconds": seconds,
                                     "latent_steps": latent_steps,
                                     "same_latent": ((result.z - full_z).abs().amax(1) < SAME_LATENT).tolist()}
    return record


def read_state(path: Path, settings: dict) -> list[dict]:
    """The chunks a previous run of the same settings finished; other settings are refused."""
    if not path.exists():
        return []
    state = torch.load(path, weights_only=True)
    changed = [f"{key}: {state['settings'].get(key)!r} -> {value!r}" for key, value in settings.items()
               if state["settings"].get(key) != value]
    if changed:
        raise SystemExit(f"{path} holds a run with other settings ({'; '.join(changed)}); "
                         f"pass another --state or delete it")
    return state["chunks"]


def write_state(path: Path, settings: dict, chunks: list[dict]) -> None:
    with atomic_write(path, "wb") as file:
        torch.save({"settings": settings, "chunks": chunks}, file)


def run_chunks(args, settings: dict, measure, benchmark: str) -> tuple[list[dict], torch.Tensor]:
    """(chunks, labels): ``measure(generator, classifier, {"clean": x, "fgsm": x_adv})`` of every chunk of images.

    Each chunk is saved to --state (default: runs/BENCHMARK/HASH-OF-SETTINGS.pt) as it finishes; a rerun
    resumes after the last one saved.
    """
    device = torch.device(args.device)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    state = args.state or ROOT / "runs" / benchmark / f"{digest}.pt"
    chunks = read_state(state, settings)
    generator = load_generator(args.generator, device)
    classifier = load_classifier(args.classifier, device)
    images, labels = load_dataset("mnist", train=False, root=args.data_root)
    images, labels = images[: args.n].to(device), labels[: args.n].to(device)
    adversarial = craft(classifier, None, images, labels, attack="fgsm", threat="oblivious", dataset="mnist")
    for start in tqdm(range(len(chunks) * args.chunk, len(images), args.chunk), desc=f"chunks -> {state}"):
        part = slice(start, start + args.chunk)
        chunks.append({"start": start, **measure(generator, classifier, {"clean": images[part],
                                                                         "fgsm": adversarial[part]})})
        write_state(state, settings, chunks)
    return chunks, labels.cpu()


def summarize(chunks: list[dict], labels: torch.Tensor, names: tuple[str, ...], variant: str) -> dict:
    """One table row's numbers: ``variant`` against the full run on the finished chunks' images of ``names``."""
    got = {which: {"predictions": [], "errors": [], "same_latent": [], "seconds": 0.0, "latent_steps": 0}
           for which in ("full", variant)}
    truth = []
    for chunk in chunks:
        for name in names:
            for which in got:
                for key in got[which]:
                    got[which][key] += chunk[name][which][key]
            truth += labels[chunk["start"] : chunk["start"] + len(chunk[name]["full"]["predictions"])].tolist()
    full, other, n = got["full"], got[variant], len(truth)
    agree = sum(a == b for a, b in zip(full["predictions"], other["predictions"]))
    correct = {which: sum(p == t for p, t in zip(run["predictions"], truth))
               for which, run in (("full", full), ("variant", other))}
    return {"n": n, "agreement": agree / n, "interval": wilson_interval(agree, n),
            "same_latent": sum(other["same_latent"]) / n,
            **{f"accuracy_{which}": count / n for which, count in correct.items()},
            "difference": (correct["variant"] - correct["full"]) / n,
            "difference_interval": difference_interval(correct["variant"], n, correct["full"], n),
            **{f"mse_{which}": sum(run["errors"]) / n for which, run in (("full", full), ("variant", other))},
            "seconds_full": full["seconds"], "seconds_variant": other["seconds"],
            "time_ratio": full["seconds"] / other["seconds"],
            "work_ratio": full["latent_steps"] / other["latent_steps"]}


def table_row(images: str, variant: str, row: dict) -> list:
    return [images, variant, row["n"], f"{row['accuracy_full']:.3f}", f"{row['accuracy_variant']:.3f}",
            difference_text(row["difference"], row["difference_interval"]),
            interval_text(row["agreement"], row["interval"]), f"{row['same_latent']:.3f}",
            f"{row['mse_full']:.5f} / {row['mse_variant']:.5f}", f"{row['seconds_full']:.1f}",
            f"{row['seconds_variant']:.1f}", f"**{row['time_ratio']:.2f}x**", f"{row['work_ratio']:.2f}x"]


def halvings(rungs: dict[int, int], R: int) -> str:
    """project()'s rungs in words: "10 -> 5 after step 10, 5 -> 3 after step 20, ..."."""
    before, words = R, []
    for step, kept in rungs.items():
        words.append(f"{before} -> {kept} after step {step}")
        before = kept
    return ", ".join(words)


def report(chunks: list[dict], labels: torch.Tensor, settings: dict, argv: list[str]) -> str:
    variants = [f"prune={p}" for p in settings["prune"]] + [f"seed={settings['seed'] + 1}"] * settings["other_seed"]
    groups = [((name,), name) for name in SETS] + [(SETS, "both")]
    rows = {(title, variant): summarize(chunks, labels, names, variant)
            for variant in variants for names, title in groups}
    verdicts = []
    for variant, prune in zip(variants, settings["prune"]):
        both = rows["both", variant]
        meets = both["agreement"] >= 0.99 and both["time_ratio"] >= 3
        verdicts.append(f"- `{variant}` ({halvings(halving_rungs(prune, settings['L'], settings['R']), settings['R'])})"
                        f": agreement {both['agreement']:.3f} at {both['time_ratio']:.2f}x less projection time, "
                        f"{'meets' if meets else 'does NOT meet'} the issue's bar (>= 0.99 at >= 3x).")
    if settings["other_seed"]:
        both = rows["both", variants[-1]]
        verdicts.append(f"- `{variants[-1]}`: the full projection from other random starts agrees with seed "
                        f"{settings['seed']}'s on {both['agreement']:.3f}: how far the defense's own prediction "
                        f"depends on its starts.")
    return "\n".join([
        "# Restart pruning against the full projection\n",
        f"Machine: {settings['machine']}; torch {torch.__version__}. Generator `{settings['generator']}` "
        f"(sha256 {settings['generator_sha256'][:12]}), classifier `{settings['classifier']}`; the first "
        f"{rows['clean', variants[0]]['n']} MNIST test images (of --n {settings['n']}), clean and oblivious FGSM "
        f"(eps 0.3, the attacks package's default, crafted once against the bare classifier); projection seed "
        f"{settings['seed']} for each chunk of {settings['chunk']} images. Full: L={settings['L']}, R={settings['R']}, "
        f"Defense-GAN's optimiser; each pruned variant is the same with `prune=P`"
        f"{'; `seed=S` is the full projection from another seed' if settings['other_seed'] else ''}. "
        f"All run side by side on each chunk. "
        f"Made by `{shlex.join(['python', 'benchmarks/restart_pruning.py', *argv])}`.\n",
        *markdown_table(["images", "variant", "n", "defended accuracy, full", "defended accuracy, variant",
                         "variant - full (Newcombe 95%)", "prediction agrees with full (95% Wilson)",
                         "same latent as full", "mean MSE full / variant",
                         "seconds full", "seconds variant", "time ratio full / variant", "latent-steps ratio"],
                        [table_row(title, variant, row) for (title, variant), row in rows.items()]),
        *verdicts, "",
    ])


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, as the README's commands write paths."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def settings_of(args) -> dict:
    """What a state file is made with: a rerun resumes only under the same settings."""
    return {"generator": shown(args.generator), "generator_sha256": file_sha256(args.generator),
            "classifier": shown(args.classifier), "classifier_sha256": file_sha256(args.classifier),
            "n": args.n, "seed": args.seed, "L": args.L, "R": args.R, "prune": args.prune, "chunk": args.chunk,
            "machine": machine(torch.device(args.device))}


def run(args, argv: list[str]) -> str:
    settings = settings_of(args) | {"other_seed": args.other_seed}
    device = torch.device(args.device)
    chunks, labels = run_chunks(args, settings, lambda generator, classifier, images: measure_chunk(
        generator, classifier, images, args, device), "restart_pruning")
    return report(chunks, labels, settings, argv)


def prune_values(text: str) -> list[float]:
    """--prune's comma-separated fractions, each checked as ``project`` checks it."""
    try:
        return [check_prune(float(part)) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parser_of(description: str, out: Path) -> argparse.ArgumentParser:
    """The arguments of both restart benchmarks (this one and restart_ranks.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--generator", type=Path, default=GENERATOR,
                        help="generator checkpoint (default: the DCGAN at 10,000 steps; "
                             "also e.g. zoo/mnist-wgan-gp/generator.pt)")
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER)
    parser.add_argument("--data-root", help="data root holding MNIST (default: $DEFENSE_HGAN_DATA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=500, help="the first N MNIST test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--L", type=int, default=200)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--prune", type=prune_values, default=[0.05, 0.1, 0.4],
                        help="project()'s prune values to measure, comma-separated (the first halving's fraction of L)")
    parser.add_argument("--chunk", type=int, default=50, help="images projected and saved at a time")
    parser.add_argument("--state", type=Path,
                        help="partial results, for resuming (default: runs/BENCHMARK/HASH-OF-SETTINGS.pt)")
    parser.add_argument("--out", type=Path, default=out)
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__.splitlines()[0], RESULTS)
    parser.add_argument("--other-seed", action="store_true",
                        help="also run the full projection with seed+1: the agreement the defense has with itself")
    args = parser.parse_args(argv)
    write_report(run(args, argv), args.out)


if __name__ == "__main__":
    main()
