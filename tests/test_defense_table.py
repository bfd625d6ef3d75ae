"""benchmarks/defense_table.py: naming our rows after the model they were trained as."""
import pytest


@pytest.fixture
def defense_table(benchmark):
    return benchmark("defense_table")


@pytest.mark.parametrize("model, name", [
    ("wgan-gp", "Defense-GAN"), ("wgan-gp-10k", "Defense-GAN"), ("hgan-frozen-10k", "Defense-HGAN"),
    ("s-argan", "Defense-S-ARGAN"), ("s-argan-10k", "Defense-S-ARGAN"), ("pargan-2k", "Defense-PARGAN"),
    ("mygan", "Defense-MYGAN"),
])
def test_a_variant_takes_its_models_name(defense_table, model, name):
    assert defense_table._name(model) == name
