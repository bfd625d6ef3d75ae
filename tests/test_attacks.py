import numpy as np
import pytest
import torch
from torch import nn

from attacks import ATTACKS, AUTOATTACK, attack_defaults, attack_settings, build_attack
from defense_hgan.art_defense import art_classifier

SHAPE = (1, 8, 8)
FAST = {"fgsm": {}, "pgd": {"max_iter": 10, "eps_step": 0.05}, "cw": {"max_iter": 10}, "apgd-ce": {"max_iter": 10},
        "apgd-dlr": {"max_iter": 10}, "square": {"max_iter": 1000}}  # seconds, not minutes


def blobs(per_class: int = 4, seed: int = 1):
    """Ten classes of 1x8x8 images: fixed random prototypes plus a little noise; labels cycle 0-9."""
    prototypes = torch.rand(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10).repeat(per_class)
    noise = 0.05 * torch.randn(len(labels), *SHAPE, generator=torch.Generator().manual_seed(seed))
    return (prototypes[labels] + noise).clamp(0, 1), labels


def trained_classifier() -> nn.Module:
    """A linear classifier that fits ``blobs`` perfectly in well under a second."""
    return fitted_linear(*blobs(20, seed=2), steps=100)


def fitted_linear(images: torch.Tensor, labels: torch.Tensor, steps: int) -> nn.Module:
    """A seeded linear classifier of 1x8x8 images fitted to ``images`` by ``steps`` of Adam."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return trained_classifier()


def accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return (model(torch.as_tensor(images)).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("name", [name for name in ATTACKS if name != "autoattack"])
def test_each_attack_lowers_an_undefended_classifiers_accuracy(name, classifier):
    images, labels = blobs()
    assert accuracy(classifier, images, labels) == 1.0
    np.random.seed(0)
    attack = build_attack(name, art_classifier(classifier, input_shape=SHAPE), "mnist", **FAST[name])
    adversarial = attack.generate(x=images.numpy(), y=labels.numpy())
    assert adversarial.shape == images.shape and adversarial.min() >= 0 and adversarial.max() <= 1
    assert accuracy(classifier, adversarial, labels) <= 0.2


def test_defaults_are_the_papers_settings():
    for dataset in ("mnist", "fashion-mnist"):
        defaults = attack_defaults(dataset)
        assert defaults["fgsm"]["eps"] == 0.3 and defaults["fgsm"]["norm"] == "inf"
        assert (defaults["pgd"]["eps"], defaults["pgd"]["eps_step"], defaults["pgd"]["max_iter"]) == (0.3, 0.01, 40)
        assert defaults["cw"]["confidence"] == 0 and defaults["cw"]["binary_search_steps"] == 1
        assert (defaults["cw"]["max_iter"], defaults["cw"]["initial_const"]) == (100, 100)
        for apgd in ("apgd-ce", "apgd-dlr"):  # Croce & Hein 2020: 100 iterations, initial step 2 eps, one run
            assert (defaults[apgd]["eps"], defaults[apgd]["eps_step"], defaults[apgd]["max_iter"]) == (0.3, 0.6, 100)
            assert defaults[apgd]["nb_random_init"] == 1
        assert (defaults["square"]["max_iter"], defaults["square"]["p_init"]) == (5000, 0.8)  # AutoAttack's standard
        assert defaults["autoattack"] == {part: defaults[part] for part in AUTOATTACK}
    cifar = attack_defaults("cifar10")
    assert cifar["fgsm"]["eps"] == 0.3  # HGAN Table 9
    assert (cifar["pgd"]["eps"], cifar["pgd"]["eps_step"], cifar["pgd"]["max_iter"]) == (8 / 255, 2 / 255, 20)
    assert (cifar["apgd-ce"]["eps"], cifar["apgd-ce"]["eps_step"]) == (8 / 255, 16 / 255)
    assert cifar["square"]["eps"] == 8 / 255


def test_defaults_are_a_fresh_copy():
    attack_defaults("mnist")["fgsm"]["eps"] = 1.0
    assert attack_defaults("mnist")["fgsm"]["eps"] == 0.3


def test_overrides_win_and_a_new_pgd_eps_scales_its_step(classifier):
    assert attack_settings("cw", "mnist", confidence=5.0)["confidence"] == 5.0
    scaled = attack_settings("pgd", "mnist", eps=0.15)
    assert scaled["eps"] == 0.15 and scaled["eps_step"] == pytest.approx(0.005)
    assert attack_settings("pgd", "mnist", eps=0.15, eps_step=0.1)["eps_step"] == 0.1
    attack = build_attack("pgd", art_classifier(classifier, input_shape=SHAPE), "cifar10", max_iter=3)
    assert (attack.eps, attack.max_iter) == (8 / 255, 3)


def test_autoattack_overrides_go_to_every_part_or_to_the_one_named():
    settings = attack_settings("autoattack", "mnist", eps=0.1, square={"max_iter": 100})
    assert list(settings) == list(AUTOATTACK) and {part["eps"] for part in settings.values()} == {0.1}
    assert settings["apgd-ce"]["eps_step"] == pytest.approx(0.2)  # the step keeps its ratio to eps
    assert settings["square"]["max_iter"] == 100 and settings["apgd-dlr"]["max_iter"] == 100
    assert attack_settings("autoattack", "mnist", eps=0.1, square={"eps": 0.2})["square"]["eps"] == 0.2


def test_unknown_attacks_settings_and_datasets_name_the_choices(classifier):
    estimator = art_classifier(classifier, input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"unknown attack 'deepfool'.*'fgsm', 'pgd', 'cw'"):
        build_attack("deepfool", estimator)
    with pytest.raises(ValueError, match=r"no setting\(s\) \['step'\].*eps_step"):
        build_attack("pgd", estimator, step=0.1)
    with pytest.raises(ValueError, match="expected one of"):
        attack_defaults("svhn")
    with pytest.raises(ValueError, match="autoattack is the worst case over several ART attacks.*make_attack"):
        build_attack("autoattack", estimator)
