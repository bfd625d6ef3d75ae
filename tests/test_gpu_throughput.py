"""benchmarks/gpu_throughput.py's code paths on the CPU (its numbers need a GPU; these check the table it writes)."""

import pytest
import torch


@pytest.fixture
def gpu_throughput(benchmark):
    return benchmark("gpu_throughput")


def test_a_smoke_run_writes_a_table_naming_the_device_and_torch(gpu_throughput, tmp_path):
    out = tmp_path / "gpu.md"
    gpu_throughput.main(["--device", "cpu", "--smoke", "--models", "dcgan", "--variants", "fp32,channels_last",
                         "--out", str(out)])
    report = out.read_text()
    from measure import machine

    assert f"Device: {machine(torch.device('cpu'))}; torch {torch.__version__}" in report
    assert "generator `zoo/mnist-wgan-gp/generator.pt`" in report
    assert "| fp32 |" in report and "| channels_last |" in report  # a projection row per variant
    assert "| model | fp32 | channels_last |" in report and "| dcgan | " in report
    assert "Fastest variant (x fp32): projection: " in report and "these numbers mean nothing" in report


def test_a_failing_variant_is_reported_in_its_cell_and_the_others_still_run(gpu_throughput):
    rows, rates = gpu_throughput.training_rows(["no-such-model", "dcgan"], ["fp32"], batch_size=2, steps=1, warmup=0,
                                               device=torch.device("cpu"), seed=0)
    assert rows[0][0] == "no-such-model"
    assert rows[0][1].startswith("fails: ValueError: unknown generator model 'no-such-model'")
    assert rows[1][1].endswith("(1.00x)") and set(rates["dcgan"]) == {"fp32"} and rates["no-such-model"] == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_refuses_with_a_clear_message(gpu_throughput, tmp_path):
    with pytest.raises(SystemExit, match="measures a CUDA GPU and this machine has none"):
        gpu_throughput.main(["--out", str(tmp_path / "gpu.md")])
    with pytest.raises(SystemExit, match="--device cpu is not a GPU"):
        gpu_throughput.main(["--device", "cpu", "--out", str(tmp_path / "gpu.md")])
    assert not (tmp_path / "gpu.md").exists()
