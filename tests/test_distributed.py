"""Data-parallel training under torchrun: the launch environment, the single-process no-op, and real 2-rank gloo
runs that the tests start themselves (marked ``distributed``: ``pytest -m distributed`` selects them)."""
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from defense_hgan.checkpoints import load_checkpoint
from defense_hgan.classifier_io import load_classifier
from defense_hgan.distributed import LAUNCH_VARIABLES, Launch, derived_seed, launch_environment, session
from defense_hgan.gan_training import GanConfig, train_generator
from defense_hgan.generator_io import load_generator
from defense_hgan.generators import GENERATOR_MODELS
from defense_hgan.sweep import CSV_NAME, read_sweep
from defense_hgan.defense import gan_defense
from defense_hgan.scoring import attack_row
from tests.distributed_evaluation_worker import (CHUNK, N, PGD, Recorded, command_line_evaluate, command_line_sweep,
                                                 library_evaluation, save_checkpoints)
from tests.test_attacks import blobs, trained_classifier
from tests.test_projection import TinyGenerator
from tests.test_sweep import without_seconds

WORKER = Path(__file__).with_name("distributed_worker.py")
EVALUATION_WORKER = Path(__file__).with_name("distributed_evaluation_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
LAUNCHED = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}


def test_no_torchrun_variables_is_one_rank_of_one():
    assert launch_environment({}) == Launch(rank=0, size=1, local_rank=0)
    assert launch_environment(LAUNCHED) == Launch(rank=1, size=2, local_rank=1)


@pytest.mark.parametrize("environ, message", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "half set: RANK=0, WORLD_SIZE=2 but not LOCAL_RANK"),
    ({**LAUNCHED, "RANK": "2"}, "inconsistent: RANK=2, WORLD_SIZE=2"),
    ({**LAUNCHED, "WORLD_SIZE": "two"}, "WORLD_SIZE='two'; expected an integer"),
    ({**LAUNCHED, "MASTER_PORT": ""}, "WORLD_SIZE=2 but MASTER_PORT is not set"),
])
def test_a_half_set_launch_is_refused_naming_what_is_missing(environ, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        launch_environment(environ)


def test_a_single_process_world_leaves_everything_as_it_was(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    module, values = torch.nn.Linear(2, 1), {"g": 0.25}
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    with session("cpu") as world:
        world.average_gradients_before_step(optimizer)
        assert (world.rank, world.size, world.is_main, world.device) == (0, 1, True, torch.device("cpu"))
        assert world.mean(values) is values and world.gather("x") == ["x"] and world.share(lambda: 7) == 7
        assert world.wrap(module) is module and world.shard(3) == range(3) and world.rank_seed(5) == 5
        assert list(world.map(lambda item: item + 1, [1, 2])) == [2, 3]
    assert not optimizer._optimizer_step_pre_hooks  # no hook: the step is the one a plain run takes


def test_derived_seeds_are_stable_and_differ_between_streams():
    assert derived_seed(0, 1) == derived_seed(0, 1)
    assert len({derived_seed(0, 1), derived_seed(1, 0), derived_seed(0, 2), derived_seed(0, 1, 0)}) == 4


def _torchrun(*args):
    """Run ``torchrun --standalone --nproc-per-node 2 ARGS`` (gloo, a free port, one thread a rank)."""
    env = {name: value for name, value in os.environ.items() if name not in LAUNCH_VARIABLES}
    return subprocess.run([*TORCHRUN, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"})


def _train_generator(*flags):
    return _torchrun("-m", "--", "defense_hgan", "train-generator", "--device", "cpu", "--batch-size", 4, *flags)


@pytest.mark.distributed
def test_two_ranks_share_average_and_train_every_model(mnist_root, tmp_path):
    result = _torchrun(WORKER, mnist_root, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "worker.json").read_text())
    first, second = report["ranks"]
    assert report["group_left_open"]  # a process group the caller made is the caller's to close
    assert first["shared"] == second["shared"] == "from rank 0"
    assert first["refused"] == second["refused"] == "rank 0 refuses"  # rank 0's refusal stops both ranks
    assert first["gathered"] == [0, 1] and first["mean"] == second["mean"] == {"rank": 0.5, "one": 1.0}
    assert (first["shard"], second["shard"]) == ([0, 2, 4], [1, 3])
    # rounds of one item a rank, every result on every rank in order; a failure on one rank stops both
    assert first["mapped"] == second["mapped"] == [[0, 0], [1, 1], [4, 0], [9, 1], "item 4 fails on rank 0"]
    assert first["rank_seed"] != second["rank_seed"]
    assert first["broadcast_weight"] == second["broadcast_weight"] == 0.0  # rank 0's weights everywhere
    assert first["matches_full_batch"] and second["matches_full_batch"]  # through the penalty's double backward
    assert first["critic_weight_sum"] == second["critic_weight_sum"]
    assert sorted(first["generator_losses"]) == sorted(GENERATOR_MODELS)
    assert first["generator_losses"] == second["generator_losses"]  # averaged over the ranks
    assert first["classifier"]["world_size"] == 2 and first["classifier"]["effective_batch_size"] == 256
    assert first["classifier"]["test_accuracy"] == second["classifier"]["test_accuracy"]
    assert first["classifier_weight_sum"] == second["classifier_weight_sum"]


@pytest.mark.distributed
def test_a_two_rank_run_resumes_as_if_never_stopped_into_a_plain_checkpoint(mnist_root, tmp_path):
    flags = ["--model", "wgan-gp", "--data-root", mnist_root]
    for out, steps in ((tmp_path / "whole", [3]), (tmp_path / "split", [2, 3])):
        for i, n in enumerate(steps):
            result = _train_generator(*flags, "--out", out, "--steps", n, *(["--resume"] if i else []))
            assert result.returncode == 0, result.stderr
            assert result.stdout.count(f"{n} steps of wgan-gp") == 1  # rank 0 alone reports
    whole, split = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "split"))
    assert split["steps_this_run"] == 1 and split["final_losses"] == whole["final_losses"]
    assert whole["world_size"] == 2 and whole["effective_batch_size"] == 8
    states = [load_checkpoint(tmp_path / name / "training_state.pt", "generator-training") for name in ("whole", "split")]
    for name, network in states[0]["networks"].items():
        assert not any(key.startswith("module.") for key in network)
        assert all(torch.equal(network[key], states[1]["networks"][name][key]) for key in network), name
    first, second = states[1]["rng_by_rank"]
    assert not torch.equal(first["data"], second["data"])  # each rank draws its own batches
    generator = load_generator(tmp_path / "split" / "generator.pt", device="cpu")
    assert generator(torch.randn(2, generator.latent_dim)).shape == (2, 1, 28, 28)


@pytest.mark.distributed
def test_a_refusal_on_rank_0_stops_every_rank(mnist_root, tmp_path):
    out = tmp_path / "run"
    train_generator(GanConfig(steps=1, batch_size=4, out=str(out), data_root=str(mnist_root), device="cpu",
                              progress=False))
    before = (out / "generator.pt").read_bytes()
    result = _train_generator("--data-root", mnist_root, "--out", out, "--steps", 2)
    assert result.returncode != 0
    assert result.stderr.count("already holds a trained generator") == 2  # both ranks stop, neither waits
    assert (out / "generator.pt").read_bytes() == before


@pytest.mark.distributed
def test_two_ranks_train_a_classifier_that_loads(mnist_root, tmp_path):
    out = tmp_path / "run"
    result = _torchrun("-m", "--", "defense_hgan", "train-classifier", "--arch", "d", "--epochs", 1, "--device", "cpu",
                       "--data-root", mnist_root, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 1
    model = load_classifier(out / "classifier.pt", device="cpu")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_a_chunk_scores_alike_on_any_rank_whatever_ran_before_it(one_thread):
    """Why N ranks give one process's numbers: the last chunk runs third in one process but first on rank 2 of 3,
    and a chunk reseeds, so its random starts (PGD's, the attacker's and the scorer's restarts) are the same."""
    images, labels = blobs(1)  # chunks of 4: images 0-3, 4-7, 8-9
    defense = gan_defense(TinyGenerator(), L=3, R=2, seed=0)
    recorded = Recorded(defense.purify)
    classifier, defense = trained_classifier(), replace(defense, purify=recorded)

    def chunk(start: int) -> dict:
        return attack_row(classifier, defense, images[start : start + 4], labels[start : start + 4], attack="pgd",
                          threat="bpda", dataset="mnist", settings=PGD)

    in_one_process = [chunk(start) for start in (0, 4, 8)][-1]
    alone = chunk(8)
    assert {**in_one_process, "seconds": 0} == {**alone, "seconds": 0}
    (images_third, projected_third), (images_alone, projected_alone) = recorded.calls[2:]
    assert torch.equal(images_third, images_alone) and torch.equal(projected_third, projected_alone)
    assert not torch.equal(images_alone, images[8:])  # PGD moved them


@pytest.fixture
def one_thread():
    """One torch thread, as each rank of ``_torchrun`` has, so a single process computes bit for bit as a rank does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _without_seconds(value):
    """Results as JSON without their timings (every "seconds"), which differ from run to run."""
    if isinstance(value, dict):
        return {key: _without_seconds(item) for key, item in value.items() if key != "seconds"}
    return [_without_seconds(item) for item in value] if isinstance(value, list) else value


def _markdown_without_seconds(path: Path) -> str:
    text = re.sub(r"[\d.]+ s in all", "s in all", path.read_text())
    return re.sub(r"\| [\d.]+ \|$", "| |", text, flags=re.MULTILINE)  # a row's last column: its seconds


def _in_single_process_order(per_rank: list[list], rows: int, chunks: int) -> list:
    """The scoring calls of every rank in the order one process makes them: chunk k of each row ran on rank k % N."""
    calls = [iter(rank_calls) for rank_calls in per_rank]
    return [next(calls[k % len(calls)]) for _ in range(rows) for k in range(chunks)]


@pytest.mark.distributed
def test_two_ranks_evaluate_and_sweep_exactly_as_one_process(mnist_root, tmp_path, one_thread):
    save_checkpoints(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    command_line_evaluate(tmp_path, mnist_root, two, attacks="fgsm")  # one process begins, two ranks finish
    result = _torchrun(EVALUATION_WORKER, mnist_root, tmp_path, two)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("results.json") == result.stdout.count(CSV_NAME) == 1  # rank 0 alone reports
    scored = library_evaluation(tmp_path, mnist_root, one / "library")
    command_line_evaluate(tmp_path, mnist_root, one)
    command_line_sweep(tmp_path, mnist_root, one)

    chunks = -(-N // CHUNK)
    per_rank = torch.load(two / "scored.pt")
    assert [len(calls) for calls in per_rank] == [5 * 3, 5 * 2]  # five rows; chunks 0, 2, 4 on rank 0, 1, 3 on rank 1
    classifier = load_classifier(tmp_path / "classifier.pt", device="cpu")
    for (images, projected), (ranks_images, ranks_projected) in zip(
            scored, _in_single_process_order(per_rank, 5, chunks), strict=True):
        assert torch.equal(images, ranks_images) and torch.equal(projected, ranks_projected)  # bit for bit
        assert torch.equal(classifier(projected).argmax(1), classifier(ranks_projected).argmax(1))
    for folder in ("library", "evaluate"):
        single = json.loads((one / folder / "results.json").read_text())
        assert not single["pending"] and len(single["rows"]) == 5
        assert _without_seconds(json.loads((two / folder / "results.json").read_text())) == _without_seconds(single)
        assert _markdown_without_seconds(two / folder / "results.md") == _markdown_without_seconds(
            one / folder / "results.md")
    swept = read_sweep(one / "sweep" / CSV_NAME)
    assert [row["L"] for row in swept] == [2, 3, 4]
    assert without_seconds(read_sweep(two / "sweep" / CSV_NAME)) == without_seconds(swept)
