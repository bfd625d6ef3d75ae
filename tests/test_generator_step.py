"""benchmarks/generator_step.py's option rows and benchmarks/generator_profile.py's phases, on tiny batches."""

import pytest
import torch


@pytest.fixture
def benchmarks(benchmark):
    return benchmark("generator_step"), benchmark("generator_profile")


def test_option_rows_are_named_and_compared_with_their_models_row(benchmarks, tmp_path):
    generator_step, _ = benchmarks
    out = tmp_path / "options.md"
    generator_step.main(["--models", "wgan-gp", "--options", "torch-leaky-relu,fused-adam,lazy-penalty",
                         "--clock", "cpu", "--batch-size", "2", "--rounds", "1", "--steps", "1", "--warmup", "0", "--out", str(out)])
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.read_text().splitlines()
            if line.startswith("| ours") or line.startswith("| departure") or line.startswith("| reference")}
    assert set(rows) == {"ours: dcgan", "ours: dcgan, fused Adam", "ours: wgan-gp",
                         "ours: wgan-gp, critic with nn.LeakyReLU (before)", "ours: wgan-gp, fused Adam",
                         "departure: wgan-gp, penalty every 4th critic step, x4", "reference: dcgan"}
    assert rows["ours: wgan-gp"][-1] == "1.00 (1.00-1.00) |" and rows["ours: dcgan"][-1] == "1.00 (1.00-1.00) |"
    with pytest.raises(SystemExit):
        generator_step.main(["--options", "fastest", "--out", str(out)])


def test_profile_phases_find_the_penalty_double_backward_in_wgan_gp_only(benchmarks):
    generator_step, generator_profile = benchmarks
    torch.manual_seed(0)
    batches = generator_step.random_batches(2)
    wgan, _ = generator_profile.profile_model("wgan-gp", batches, steps=1, warmup=0)
    dcgan, ops = generator_profile.profile_model("dcgan", batches, steps=1, warmup=0)
    for phase in ("double backward: discriminator.net", "backward, create_graph: discriminator.net",
                  "backward: discriminator.net", "forward: generator.fc", "optimizer step"):
        assert wgan[phase] > 0, phase
    assert {"forward: discriminator.net", "backward: generator.net", "optimizer step"} <= set(dcgan)
    assert not any("double" in phase or "create_graph" in phase for phase in dcgan)
    assert sum(dcgan.values()) == pytest.approx(sum(op.self_cpu_time_total for op in ops))  # every op in one phase
