"""The command line: ``python -m defense_hgan COMMAND --flag value``.

Each command is a thin function over the library, so the CLI, tests and
notebooks run the same code.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def train_classifier(
    dataset: str = "mnist",
    arch: str | None = None,
    epochs: int | None = None,
    out: str = "runs/classifier",
    data_root: str | None = None,
    download: bool = False,
    device: str = "auto",
    seed: int = 0,
):
    """Train a classifier; writes OUT/classifier.pt and OUT/metrics.json.

    Args:
        dataset: mnist, fashion-mnist or cifar10.
        arch: a, b, c or d for (fashion-)mnist; fast for cifar10 (default: a / fast).
        epochs: passes over the training set (default: 5 for mnist models, 12 for cifar10).
        out: output folder.
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        device: auto (CUDA when present), cpu or cuda.
        seed: seed for initialisation and data order.
    """
    from classifiers import DEFAULT_ARCH, build_classifier
    from classifiers.training import recipe_for, train_classifier as fit
    from defense_hgan.classifier_io import save_classifier
    from defense_hgan.data import load_dataset
    from defense_hgan.distributed import is_main_process

    arch = DEFAULT_ARCH.get(dataset) if arch is None else str(arch).lower()
    model = build_classifier(dataset, arch)
    if epochs is None:
        epochs = 12 if dataset == "cifar10" else 5
    train = load_dataset(dataset, train=True, root=data_root, download=download)
    test = load_dataset(dataset, train=False, root=data_root, download=download)
    metrics = fit(model, train, test, epochs=int(epochs), recipe=recipe_for(dataset), device=device, seed=seed)
    metrics = {"dataset": dataset, "arch": arch, **metrics}
    if not is_main_process():  # under torchrun, rank 0 alone writes
        return None
    out_dir = Path(out)
    save_classifier(model, out_dir / "classifier.pt", {"dataset": dataset, "arch": arch, "options": {}})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {epochs} epochs in {metrics['seconds']} s -> {out_dir}")
    return None


def tune_classifier(
    classifier: str,
    generator: str,
    images: int = 5000,
    out: str = "runs/classifier-rec",
    L: int = 50,
    R: int = 2,
    epochs: int = 2,
    data_root: str | None = None,
    download: bool = False,
    device: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
):
    """Defense-GAN-Rec: fine-tune a classifier on a generator's reconstructions; writes OUT/classifier.pt, metrics.json.

    The tuned classifier goes in front of the same generator's defense (``evaluate OUT/classifier.pt GENERATOR``).

    Args:
        classifier: the trained classifier.pt to start from; its dataset is the one used.
        generator: the generator.pt whose reconstructions it learns to read.
        images: how many random training images are reconstructed (each joins the tuning set with its reconstruction).
        out: output folder.
        L: projection steps of each reconstruction (the defense itself keeps its own L).
        R: random restarts of each reconstruction.
        epochs: passes over the images and their reconstructions (Adam 3e-4, batch 128).
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        device: auto (CUDA when present), cpu or cuda.
        seed: seed for the images drawn, their projection (seed + 1) and the tuning order.
        overwrite: replace a classifier.pt that OUT already holds.
    """
    from defense_hgan.checkpoints import check_trained_on, file_sha256, load_checkpoint
    from defense_hgan.classifier_io import KIND, load_classifier, save_classifier
    from defense_hgan.data import load_dataset
    from defense_hgan.devices import resolve_device
    from defense_hgan.generator_io import load_generator
    from defense_hgan.reconstruction_tuning import tune_on_reconstructions

    out_dir = Path(out)
    if (out_dir / "classifier.pt").exists() and not overwrite:
        raise ValueError(f"{out_dir} already holds a classifier.pt; pass --overwrite to replace it, or choose "
                         f"another --out")
    check_trained_on(classifier=classifier, generator=generator)
    device = resolve_device(device)
    source, drawing = load_classifier(classifier, device), load_generator(generator, device)
    dataset, config = source.dataset, load_checkpoint(classifier, KIND)["config"]
    train = load_dataset(dataset, train=True, root=data_root, download=download)
    test = load_dataset(dataset, train=False, root=data_root, download=download)
    tuned, metrics = tune_on_reconstructions(source, drawing, train, test, int(images), L=int(L), R=int(R),
                                             epochs=int(epochs), seed=int(seed), device=str(device))
    metrics = {"dataset": dataset, "tuned_from": str(classifier), "tuned_from_sha256": file_sha256(classifier),
               "generator": str(generator), "generator_sha256": file_sha256(generator), **metrics}
    save_classifier(tuned, out_dir / "classifier.pt", config)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy {metrics['test_accuracy']:.4f} after tuning on {images} images and their "
          f"reconstructions -> {out_dir}")
    return None


def train_generator(
    model: str = "dcgan",
    dataset: str = "mnist",
    steps: int = 10_000,
    batch_size: int = 64,
    out: str = "runs/generator",
    resume: bool = False,
    overwrite: bool = False,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    snapshot_every: int = 0,
    seed: int = 0,
    device: str = "auto",
    bf16: bool = False,
    data_root: str | None = None,
    download: bool = False,
    teacher_loss: str | None = None,
    teacher_filters: int | None = None,
    teacher_resnet: int | None = None,
    teacher_from: str | None = None,
    teacher_images: int = 10_000,
    real_label: float = 1.0,
    d_lr: float | None = None,
):
    """Train a generator; writes OUT/generator.pt, OUT/training_state.pt, OUT/samples/, OUT/metrics.json.

    Args:
        model: dcgan, wgan-gp, hgan (DCGAN + PixelCNN++ teacher), autogan (the teacher's output as the only real),
            s-argan / c-argan (an encoder and an LSTM over spatial / channel features) or pargan (S-ARGAN + Patch-GAN head).
        dataset: mnist, fashion-mnist or cifar10.
        steps: generator updates in all (a resumed run counts the saved ones).
        batch_size: images per batch.
        out: output folder.
        resume: continue the run saved in OUT from its last checkpoint.
        overwrite: start afresh in an OUT that holds a generator, replacing it (and its samples, snapshots, state).
        sample_every: write a 64-sample grid to OUT/samples every this many steps.
        checkpoint_every: checkpoint every this many steps (and at the end).
        snapshot_every: keep the generator at every this many steps in OUT/snapshots/ (0: none), for training curves.
        seed: seed for initialisation, noise and data order.
        device: auto (CUDA when present), cpu or cuda.
        bf16: bfloat16 autocast (about 20x slower on this project's CPU, which lacks native bf16).
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        teacher_loss: hgan/autogan: nll (default, the teacher's likelihood) or l1 (the paper's |x - p(x)|).
        teacher_filters: hgan/autogan: PixelCNN++ filters per stream (default 32).
        teacher_resnet: hgan/autogan: PixelCNN++ gated resnets per stage (default 1).
        teacher_from: hgan/autogan: a departure from Algorithm 1 that makes a step cost about a DCGAN step: take the
            teacher, frozen, from this HGAN/AutoGAN training_state.pt (or another frozen run's teacher.pt) instead of
            training one alongside.
        teacher_images: with teacher_from: how many training images the frozen teacher's mean images are made of.
        real_label: dcgan/hgan/autogan: D's target for real images (1, the papers'); 0.9 is one-sided label smoothing
            (Salimans et al. 2016), a departure that keeps D from growing sure of the real images and winning.
        d_lr: D's (or the critic's) Adam learning rate (default: the model's, the papers'; G's stays the model's);
            a lower one is a slower D, a departure that keeps D from winning.
    """
    from defense_hgan.cli_args import number
    from defense_hgan.distributed import is_main_process
    from defense_hgan.gan_training import GanConfig, TrainingDiverged, train_generator as fit

    teacher = {"nr_filters": teacher_filters, "nr_resnet": teacher_resnet}
    config = GanConfig(
        model=str(model), dataset=dataset, steps=int(steps), batch_size=int(batch_size), out=str(out),
        sample_every=int(sample_every), checkpoint_every=int(checkpoint_every),
        snapshot_every=int(snapshot_every), seed=int(seed), device=device,
        bf16=bool(bf16), resume=bool(resume), overwrite=bool(overwrite), data_root=data_root, download=bool(download),
        teacher_options={name: int(value) for name, value in teacher.items() if value is not None},
        teacher_loss=teacher_loss, teacher_from=None if teacher_from is None else str(teacher_from),
        teacher_images=int(teacher_images), real_label=float(real_label),
        d_lr=None if d_lr is None else number(d_lr),
    )
    try:
        metrics = fit(config)
    except TrainingDiverged as err:
        sys.exit(f"error: {err}")
    if is_main_process():
        print(f"{metrics['steps']} steps of {config.model} in {metrics['seconds']} s -> {out}/generator.pt")
    return None


def metrics(
    generator: str,
    classifier: str,
    dataset: str = "mnist",
    n_samples: int = 10_000,
    n_project: int = 200,
    L: int = 200,
    R: int = 10,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    device: str = "auto",
    out: str | None = None,
):
    """Score a generator: mode KL and chi-square (HGAN Table 1), classifier FD, projection MSE.

    Args:
        generator: a generator checkpoint (train-generator's OUT/generator.pt).
        classifier: a classifier checkpoint of the same dataset (train-classifier's OUT/classifier.pt).
        dataset: mnist, fashion-mnist or cifar10; its test set is the reference.
        n_samples: generated images to label and featurise (the paper: 10,000, the test set's size).
        n_project: test images to project (0 skips the projection).
        L: projection steps.
        R: projection restarts.
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        seed: seed for the samples and the projection's starts.
        device: auto (CUDA when present), cpu or cuda.
        out: also write the metrics to this JSON file.
    """
    from defense_hgan.checkpoints import check_trained_on
    from defense_hgan.classifier_io import load_classifier
    from defense_hgan.data import load_dataset
    from defense_hgan.generator_io import load_generator
    from defense_hgan.metrics import generator_metrics

    check_trained_on(dataset, generator=generator, classifier=classifier)
    test_images, _ = load_dataset(dataset, train=False, root=data_root, download=download)
    result = generator_metrics(
        load_generator(generator, device), load_classifier(classifier, device), test_images,
        n_samples=int(n_samples), n_project=int(n_project), L=int(L), R=int(R), seed=int(seed),
    )
    result = {"generator": str(generator), "classifier": str(classifier), "dataset": dataset, **result}
    for name in ("mode_kl", "mode_chi_square", "classifier_fd", "projection_mse"):
        value = result[name]
        print(f"{name:<16} {'-' if value is None else f'{value:.6g}'}")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"-> {out}")
    return None


def evaluate(
    classifier: str,
    generator: str,
    dataset: str = "mnist",
    attacks: str = "fgsm,pgd,cw",
    threat: str = "oblivious,bpda",
    L: int = 200,
    R: int = 10,
    attacker_L: int | None = None,
    attacker_R: int | None = None,
    attacker_warm_L: int | None = None,
    n: int = 500,
    eps: float | None = None,
    settings: dict | None = None,
    eot_samples: int = 5,
    sanity: bool = False,
    chunk: int = 100,
    out: str = "runs/evaluate",
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    device: str = "auto",
    adversarial_cache: str | None = None,
):
    """Attack a classifier bare and behind Defense-GAN; writes OUT/results.json and OUT/results.md.

    Both files are rewritten after every finished chunk of images; rerun the
    same command to resume an interrupted evaluation (finished chunks, rows and
    sanity checks are skipped) or to add attacks or threat models. Other
    settings into the same OUT are refused. Under torchrun the ranks share out
    the chunks and write the results one process would, number for number.

    Args:
        classifier: a classifier checkpoint (train-classifier's OUT/classifier.pt).
        generator: a generator checkpoint of the same dataset (train-generator's OUT/generator.pt).
        dataset: mnist, fashion-mnist or cifar10; its test set is attacked.
        attacks: comma-separated, of fgsm, pgd, cw, apgd-ce, apgd-dlr, square, autoattack (the per-image worst
            case over apgd-ce, apgd-dlr and square); settings: see the attacks package. results.md names the
            strongest attack under each threat model.
        threat: comma-separated threat models, of oblivious, bpda, bpda-eot.
        L: projection steps (of the deployed defense, which scores every row).
        R: projection restarts (likewise).
        attacker_L: bpda, bpda-eot: projection steps of the attacker's projection, a cheaper approximation of the
            defense for its gradients (default: L); the rows are still scored with L, R.
        attacker_R: bpda, bpda-eot: restarts of the attacker's projection (default: R).
        attacker_warm_L: bpda: warm-start the attacker's projection: within an attack, each image takes this many
            steps (1 restart) from its latent of the previous attack iteration, after one cold attacker_L,
            attacker_R projection of the clean images (default: every projection cold). Not with bpda-eot.
        n: attack the first n test images (0: all).
        eps: L-inf budget of every L-inf attack (all but cw) instead of the dataset's (a number or a fraction such
            as 8/255).
        settings: ART overrides per attack, e.g. "{pgd: {max_iter: 100}, cw: {confidence: 5}}"; autoattack's go to
            each of its attacks, or to one: "{autoattack: {square: {max_iter: 1000}}}".
        eot_samples: bpda-eot: projections averaged in each gradient.
        sanity: also run Carlini et al. (2019)'s sanity checks (PGD under bpda); failures are flagged.
        chunk: images attacked, scored and saved at a time, so an interruption loses at most one chunk's work. Under
            torchrun each rank takes a chunk at a time: pass at most n / ranks to keep every rank busy.
        out: output folder; its results are resumed when present (and refused if made with other settings).
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        seed: seed for the attacks' and the defense's random starts.
        device: auto (CUDA when present), cpu or cuda.
        adversarial_cache: a folder: keep the oblivious attacks' adversarial images there and reuse them, so an
            evaluation of another generator (same classifier, n, chunk, attacks, settings and seed) skips crafting.
    """
    from attacks import LINF_ATTACKS
    from defense_hgan.checkpoints import check_trained_on
    from defense_hgan.classifier_io import load_classifier
    from defense_hgan.cli_args import number
    from defense_hgan.data import load_dataset
    from defense_hgan.defense import gan_defense
    from defense_hgan.distributed import session
    from defense_hgan.evaluation import evaluate as run
    from defense_hgan.generator_io import load_generator

    check_trained_on(dataset, generator=generator, classifier=classifier)
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"--settings must be a dict of attack -> ART settings, got {settings!r}")
    settings = {name: dict(values) for name, values in (settings or {}).items()}
    if eps is not None:
        for name in LINF_ATTACKS:
            settings.setdefault(name, {}).setdefault("eps", number(eps))
    images, labels = load_dataset(dataset, train=False, root=data_root, download=download)
    total, n = len(labels), int(n) if int(n) > 0 else len(labels)
    with session(device) as world:  # under torchrun: this rank's device, the chunks shared out over the ranks
        defense = gan_defense(load_generator(generator, world.device), int(L), int(R), seed=int(seed),
                              progress=world.is_main,
                              attacker_L=None if attacker_L is None else int(attacker_L),
                              attacker_R=None if attacker_R is None else int(attacker_R),
                              attacker_warm_L=None if attacker_warm_L is None else int(attacker_warm_L))
        results = run(
            load_classifier(classifier, world.device), defense, images[:n], labels[:n], dataset=dataset,
            attacks=attacks, threats=threat, settings=settings, eot_samples=int(eot_samples), seed=int(seed),
            test_set_size=total, sanity=bool(sanity), chunk=int(chunk), out=out,
            sources={"classifier": str(classifier), "generator": str(generator)}, test_set_labels=labels,
            adversarial_cache=adversarial_cache,
        )
    if not world.is_main:  # rank 0 alone reports
        return None
    for row in results["rows"]:
        print(f"{row['attack']:<5} {row['threat']:<10} undefended {row['accuracy_undefended']:.3f}  "
              f"defended {row['accuracy_defended']:.3f}")
    if results["sanity"] is not None:
        print(f"sanity checks {'passed' if results['sanity']['passed'] else 'FAILED (see results.md)'}")
    print(f"-> {out}/results.json, {out}/results.md")
    return None


def sweep(
    classifier: str,
    generator,
    dataset: str = "mnist",
    L="10,25,50,100,200",
    R="1,2,5,10",
    attack: str = "fgsm",
    threat: str = "oblivious",
    n: int = 500,
    eps: float | None = None,
    settings: dict | None = None,
    eot_samples: int = 5,
    out: str = "runs/sweep",
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    device: str = "auto",
):
    """Defended accuracy (clean and attacked), projection MSE and time for every (generator, L, R); OUT/sweep.csv.

    The CSV gains a row per finished cell; rerun the same command to resume an
    interrupted sweep (finished cells are skipped) or to add generators, L or R.
    Under torchrun each rank takes a cell at a time.

    Args:
        classifier: a classifier checkpoint (train-classifier's OUT/classifier.pt).
        generator: generator checkpoints of the same dataset: repeat --generator or separate them with commas.
        dataset: mnist, fashion-mnist or cifar10; its test set is attacked.
        L: projection steps to sweep, comma-separated (HGAN Figure 5: 10,25,50,100,200).
        R: projection restarts to sweep, comma-separated (HGAN Figure 5: 1,2,5,10).
        attack: one of fgsm, pgd, cw, apgd-ce, apgd-dlr, square, autoattack (settings: see the attacks package).
        threat: one of oblivious (adversarial images crafted once, against the bare classifier), bpda, bpda-eot
            (crafted again in every cell, against its defense).
        n: attack the first n test images (0: all).
        eps: L-inf budget of an L-inf attack (all but cw) instead of the dataset's (a number or a fraction such as
            8/255).
        settings: ART overrides for the attack, e.g. "{max_iter: 100}".
        eot_samples: bpda-eot: projections averaged in each gradient.
        out: output folder; its sweep.csv is resumed when present (and refused if made with other settings).
        data_root: dataset folder (default: $DEFENSE_HGAN_DATA, else ~/.cache/defense_hgan/data).
        download: let torchvision download a missing dataset.
        seed: seed for the attack's and the projections' random starts.
        device: auto (CUDA when present), cpu or cuda.
    """
    from attacks import LINF_ATTACKS
    from defense_hgan.checkpoints import check_trained_on
    from defense_hgan.classifier_io import load_classifier
    from defense_hgan.cli_args import number
    from defense_hgan.data import load_dataset
    from defense_hgan.distributed import session
    from defense_hgan.plots import cost_table
    from defense_hgan.sweep import CSV_NAME, generator_from_checkpoint, parse_grid, run_sweep

    paths = _repeated_flag("generator", generator)
    check_trained_on(dataset, classifier=classifier)
    for path in paths:
        check_trained_on(dataset, generator=path)
    L, R = parse_grid(L, "L"), parse_grid(R, "R")
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"--settings must be a dict of ART settings, got {settings!r}")
    settings = dict(settings or {})
    if eps is not None and attack in LINF_ATTACKS:
        settings.setdefault("eps", number(eps))
    images, labels = load_dataset(dataset, train=False, root=data_root, download=download)
    n = int(n) if int(n) > 0 else len(labels)
    with session(device) as world:  # under torchrun: this rank's device, the cells shared out over the ranks
        rows = run_sweep(
            load_classifier(classifier, world.device), [generator_from_checkpoint(p, world.device) for p in paths],
            images[:n], labels[:n], L=L, R=R, dataset=dataset, classifier_name=str(classifier), out=out,
            attack=attack, threat=threat, settings=settings, eot_samples=int(eot_samples), seed=int(seed),
            test_set_labels=labels,
        )
    if not world.is_main:  # rank 0 alone reports
        return None
    print(cost_table(rows))
    print(f"-> {Path(out) / CSV_NAME}")
    return None


def _repeated_flag(name: str, value) -> list[str]:
    """--NAME given several times, comma-separated or as a list, as a list of strings.

    fire keeps only the last of a repeated flag, so the command line is read
    again for the others (only when its last --NAME is the value fire gave).
    """
    argv, given = sys.argv[1:], []
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            given.append(argv[i + 1])
        elif arg.startswith(f"--{name}="):
            given.append(arg.split("=", 1)[1])
    values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if len(given) > 1 and given[-1] == ",".join(values):
        values = given
    paths = [part.strip() for v in values for part in v.split(",") if part.strip()]
    if not paths:
        raise ValueError(f"--{name} needs at least one path, got {value!r}")
    return list(dict.fromkeys(paths))


COMMANDS = {
    "train-classifier": train_classifier,
    "train-generator": train_generator,
    "tune-classifier": tune_classifier,
    "metrics": metrics,
    "evaluate": evaluate,
    "sweep": sweep,
}
# Integer flags must be at least 1, except these, where 0 has a meaning (see each command's Args).
INTEGER_FLAG_MINIMUM = {"n": 0, "n_project": 0, "snapshot_every": 0, "seed": 0, "n_samples": 2}


def main() -> None:
    """Run the CLI; bad input (unknown names, missing data or checkpoints) ends in one line, not a traceback.

    Flags and values are checked before the command runs (exit 2), so a typo never starts a long job.
    """
    import fire

    from defense_hgan.checkpoints import CheckpointError
    from defense_hgan.cli_args import CommandLineError, check_command_line
    from defense_hgan.data import DatasetNotFoundError

    try:
        check_command_line(COMMANDS, sys.argv[1:], INTEGER_FLAG_MINIMUM)
    except CommandLineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        fire.Fire(COMMANDS, name="python -m defense_hgan")
    except (DatasetNotFoundError, CheckpointError, ValueError) as err:
        sys.exit(f"error: {err}")
