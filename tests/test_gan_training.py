import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from defense_hgan import gan_training
from defense_hgan.checkpoints import load_checkpoint
from defense_hgan.cli import main
from defense_hgan.gan_training import GanConfig, TrainingDiverged, train_generator
from defense_hgan.generator_io import load_generator
from defense_hgan.generators import GENERATOR_MODELS, TEACHER_MODELS, Training
from defense_hgan.locking import FolderInUseError, output_lock

TINY_TEACHER = {"nr_filters": 8, "nr_logistic_mix": 2}


def tiny(model, root, out, **overrides) -> GanConfig:
    """A config that trains in well under a second a step: small batch, small teacher, no progress bar."""
    config = dict(model=model, dataset="mnist", steps=2, batch_size=4, out=str(out), data_root=str(root),
                  device="cpu", progress=False, teacher_options=TINY_TEACHER if model in TEACHER_MODELS else {})
    return GanConfig(**{**config, **overrides})


@pytest.mark.parametrize("model", GENERATOR_MODELS)
def test_a_few_steps_give_finite_losses_and_a_generator_that_loads(model, mnist_root, tmp_path):
    torch.manual_seed(0)
    metrics = train_generator(tiny(model, mnist_root, tmp_path / "run"))
    assert metrics["steps"] == 2 and metrics["device"] == "cpu" and metrics["seed"] == 0
    assert all(math.isfinite(value) for value in metrics["final_losses"].values())
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final_losses"] == metrics["final_losses"]
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()
    generator = load_generator(tmp_path / "run" / "generator.pt", device="cpu")
    images = generator(torch.randn(3, generator.latent_dim))
    assert images.shape == (3, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


def test_the_loss_average_starts_at_the_first_step_and_then_moves_slowly(mnist_root, tmp_path):
    first = train_generator(tiny("dcgan", mnist_root, tmp_path / "one", steps=1))
    assert first["loss_ema"] == first["final_losses"]
    both = train_generator(tiny("dcgan", mnist_root, tmp_path / "two", steps=2))  # the same first step, seeded
    decay = gan_training.LOSS_EMA_DECAY
    for name, second in both["final_losses"].items():
        assert both["loss_ema"][name] == pytest.approx(decay * first["final_losses"][name] + (1 - decay) * second)


def test_cifar_trains_with_the_teacher_too(cifar_root, tmp_path):
    train_generator(tiny("hgan", cifar_root, tmp_path / "run", dataset="cifar10", steps=1))
    assert load_generator(tmp_path / "run" / "generator.pt").image_shape == (3, 32, 32)


def _saved_networks(out):
    return load_checkpoint(out / "training_state.pt", "generator-training")["networks"]


@pytest.mark.parametrize("model", ["dcgan", "hgan"])
def test_resume_continues_from_the_saved_step_as_if_never_stopped(model, mnist_root, tmp_path):
    whole = train_generator(tiny(model, mnist_root, tmp_path / "whole", steps=4))
    train_generator(tiny(model, mnist_root, tmp_path / "split", steps=2))
    resumed = train_generator(tiny(model, mnist_root, tmp_path / "split", steps=4, resume=True))
    assert resumed["steps_this_run"] == 2 and resumed["final_losses"] == whole["final_losses"]
    for name, state in _saved_networks(tmp_path / "whole").items():
        resumed_state = _saved_networks(tmp_path / "split")[name]
        assert all(torch.equal(state[key], resumed_state[key]) for key in state), name


def test_resume_refuses_a_run_with_other_settings(mnist_root, tmp_path):
    train_generator(tiny("dcgan", mnist_root, tmp_path / "run"))
    with pytest.raises(ValueError, match=r"other settings \(batch_size 4 -> 8\)"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run", steps=3, batch_size=8, resume=True))
    with pytest.raises(ValueError, match="already at step 2"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run", resume=True))
    with pytest.raises(ValueError, match=r"other settings \(real_label 1.0 -> 0.9\)"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run", steps=3, real_label=0.9, resume=True))
    with pytest.raises(ValueError, match=r"other settings \(d_lr None -> 5e-05\)"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run", steps=3, d_lr=5e-5, resume=True))
    with pytest.raises(ValueError, match="pass --resume to continue it"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run"))
    with pytest.raises(ValueError, match="holds no training_state.pt"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "elsewhere", resume=True))


def test_a_copy_of_a_finished_model_is_not_overwritten_without_overwrite(mnist_root, tmp_path):
    train_generator(tiny("dcgan", mnist_root, tmp_path / "zoo", snapshot_every=1))
    copy = tmp_path / "copy"  # what a zoo/ folder holds: the generator and its metrics, no training state
    copy.mkdir()
    for name in ("generator.pt", "metrics.json"):
        shutil.copy(tmp_path / "zoo" / name, copy / name)
    before = {name: (copy / name).read_bytes() for name in ("generator.pt", "metrics.json")}
    with pytest.raises(ValueError, match=r"copy already holds a trained generator \(generator.pt\); pass --overwrite "
                                         r"to replace it, or choose another --out"):
        train_generator(tiny("dcgan", mnist_root, copy, seed=1))
    assert {name: (copy / name).read_bytes() for name in before} == before
    with pytest.raises(ValueError, match="pass --resume .* or --overwrite .*, not both"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "zoo", resume=True, overwrite=True))
    metrics = train_generator(tiny("dcgan", mnist_root, tmp_path / "zoo", steps=1, seed=1, overwrite=True))
    assert metrics["steps"] == 1 and metrics["seed"] == 1
    assert load_checkpoint(tmp_path / "zoo" / "training_state.pt", "generator-training")["step"] == 1
    assert not (tmp_path / "zoo" / "snapshots").exists()  # the old run's snapshots went with it
    assert sorted(p.name for p in (tmp_path / "zoo" / "samples").iterdir()) == ["step_000001.png"]


def test_cli_overwrite_replaces_the_model(monkeypatch, mnist_root, tmp_path):
    flags = ["--steps", 1, "--batch-size", 4, "--data-root", mnist_root, "--out", tmp_path / "run", "--device", "cpu"]
    _cli(monkeypatch, *flags)
    with pytest.raises(SystemExit, match="already holds a trained generator"):
        _cli(monkeypatch, *flags, "--seed", 1)
    _cli(monkeypatch, *flags, "--seed", 1, "--overwrite")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["seed"] == 1


def test_a_second_run_into_a_locked_out_is_refused_before_training(mnist_root, tmp_path):
    with output_lock(tmp_path / "run"):
        with pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"):
            train_generator(tiny("dcgan", mnist_root, tmp_path / "run"))
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".defense-hgan.lock"]


def _diverging(at_step, loss):
    """Wrap build_training so that step ``at_step`` fills the generator with NaN and reports ``loss`` as its loss."""
    build = gan_training.build_training

    def build_training(*args, **kwargs):
        training = build(*args, **kwargs)
        calls = []

        def step(networks, optimizers, next_batch):
            calls.append(1)
            losses = training.step(networks, optimizers, next_batch)
            if len(calls) == at_step:
                with torch.no_grad():
                    for p in networks["generator"].parameters():
                        p.fill_(math.nan)
                losses["g"] = torch.tensor(loss)
            return losses

        return Training(training.networks, training.optimizers, step)

    return build_training


@pytest.mark.parametrize("loss, message", [(math.nan, "the g loss became nan"),
                                           (1.0, "the generator weights became nan")])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(loss, message, monkeypatch, mnist_root, tmp_path):
    monkeypatch.setattr(gan_training, "build_training", _diverging(at_step=4, loss=loss))
    with pytest.raises(TrainingDiverged, match=f"training stopped at step 4: {message}.*from step 2, is kept"):
        train_generator(tiny("dcgan", mnist_root, tmp_path / "run", steps=6, checkpoint_every=2))
    assert load_checkpoint(tmp_path / "run" / "training_state.pt", "generator-training")["step"] == 2
    generator = load_generator(tmp_path / "run" / "generator.pt")
    assert all(torch.isfinite(p).all() for p in generator.parameters())


def test_cli_trains_hgan_end_to_end(mnist_root, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "defense_hgan", "train-generator", "--model", "hgan", "--steps", "1",
         "--batch-size", "4", "--teacher-filters", "8", "--teacher-loss", "l1", "--data-root", str(mnist_root),
         "--out", str(out), "--device", "cpu"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "teacher=" in result.stderr  # the tqdm bar shows the losses
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["config"]["teacher_loss"] == "l1"
    assert load_generator(out / "generator.pt").latent_dim == 100


def _cli(monkeypatch, *flags):
    """Run ``python -m defense_hgan train-generator FLAGS`` in this process (no interpreter start-up to pay)."""
    monkeypatch.setattr(sys, "argv", ["defense_hgan", "train-generator", *map(str, flags)])
    main()


def test_cli_resume_continues_the_saved_run(monkeypatch, mnist_root, tmp_path):
    flags = ["--steps", 1, "--batch-size", 4, "--data-root", mnist_root, "--out", tmp_path / "run", "--device", "cpu"]
    _cli(monkeypatch, *flags)
    _cli(monkeypatch, *flags, "--steps", 2, "--resume")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["steps_this_run"] == 1


@pytest.mark.parametrize("flags, message", [
    (["--model", "stylegan"], "error: unknown generator model 'stylegan'; expected one of dcgan, wgan-gp, hgan, autogan"),
    (["--model", "dcgan", "--teacher-filters", 8], "error: teacher options ['nr_filters'] apply to hgan and autogan only"),
    (["--model", "wgan-gp", "--real-label", 0.9], "error: real_label (one-sided label smoothing) applies to dcgan"),
    (["--model", "hgan", "--d-lr", 2], "error: d_lr must be a learning rate in (0, 1)"),
])
def test_cli_bad_flags_end_in_one_clear_line(flags, message, monkeypatch, mnist_root, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        _cli(monkeypatch, *flags, "--data-root", mnist_root, "--out", tmp_path / "run")
    assert str(exit_.value.code).startswith(message)


def test_snapshots_keep_the_generator_at_every_interval_and_survive_a_resume(mnist_root, tmp_path):
    out = tmp_path / "run"
    train_generator(tiny("dcgan", mnist_root, out, steps=2, snapshot_every=2))
    train_generator(tiny("dcgan", mnist_root, out, steps=4, snapshot_every=2, resume=True))
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_000002.pt", "step_000004.pt"]
    final, last = load_generator(out / "generator.pt"), load_generator(out / "snapshots" / "step_000004.pt")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), last.state_dict().values()))


@pytest.mark.parametrize("flags, message", [
    (["--model", "stylegan"], "error: unknown generator model 'stylegan'"),
    (["--dataset", "svhn"], "error: unknown dataset 'svhn'"),
])
def test_a_misspelt_name_is_named_before_any_data_is_looked_for(flags, message, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        _cli(monkeypatch, *flags, "--data-root", tmp_path / "no-data", "--out", tmp_path / "run")
    assert str(exit_.value.code).startswith(message)
    assert not (tmp_path / "run").exists()
