"""Threat models and the stronger attacks: APGD under BPDA, Square, AutoAttack's per-image worst case, and the
attacker's warm-started projection."""
import pytest
import torch

from attacks.threats import WorstCase, make_attack
from defense_hgan import defense as defense_module
from defense_hgan.defense import Defense, WarmStartProjector, correct, gan_defense
from defense_hgan.projection import project
from defense_hgan.devices import seed_everything
from defense_hgan.evaluation import evaluate
from tests.test_attacks import blobs, fitted_linear, trained_classifier
from tests.test_evaluate import masking_defense
from tests.test_projection import TinyGenerator

EPS = 0.1
GENERATOR = TinyGenerator()
CENTRES = torch.randn(10, 8, generator=torch.Generator().manual_seed(0)) * 1.5
# the tiny generator's projection, tuned to find its own images: it classifies all ten test images right
PROJECTION = {"L": 30, "R": 3, "optimizer": "adam", "lr": 0.1}


def in_range(per_class: int, seed: int):
    """Images the tiny generator makes around ten latent centres, labelled by centre."""
    labels = torch.arange(10).repeat(per_class)
    noise = 0.2 * torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return GENERATOR(CENTRES[labels] + noise), labels


@pytest.fixture(scope="module")
def tiny():
    """(classifier, defense, images, labels): a linear classifier trained on the generator's images, behind it."""
    classifier = fitted_linear(*in_range(30, seed=1), steps=300)
    return classifier, gan_defense(GENERATOR, seed=0, **PROJECTION), *in_range(1, seed=2)


def defended_accuracy(classifier, defense: Defense, images, labels) -> float:
    return correct(classifier, images, labels, defense.purify).float().mean().item()


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-dlr"])
def test_apgd_under_bpda_lowers_a_tiny_defenses_accuracy_within_eps(tiny, name):
    classifier, defense, images, labels = tiny
    assert defended_accuracy(classifier, defense, images, labels) == 1.0
    seed_everything(0)
    adversarial = make_attack(name, "bpda", classifier, defense, dataset="mnist",
                              settings={"eps": EPS, "max_iter": 5})(images, labels)
    assert adversarial.shape == images.shape and adversarial.dtype == images.dtype
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - images).abs().max() <= EPS + 1e-6
    assert defended_accuracy(classifier, defense, adversarial, labels) <= 0.2


def test_square_queries_succeed_where_a_masked_gradient_fails():
    classifier, (images, labels) = trained_classifier(), blobs(1)
    defense = masking_defense()  # hands gradient attacks the reversed gradient
    seed_everything(0)
    apgd = make_attack("apgd-ce", "bpda", classifier, defense, dataset="mnist", settings={"max_iter": 5})
    assert defended_accuracy(classifier, defense, apgd(images, labels), labels) >= 0.8
    seed_everything(0)
    adversarial = make_attack("square", "bpda", classifier, defense, dataset="mnist",
                              settings={"max_iter": 1000})(images, labels)
    assert (adversarial - images).abs().max() <= 0.3 + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert defended_accuracy(classifier, defense, adversarial, labels) <= 0.2


def test_worst_case_keeps_each_images_first_success_and_attacks_only_the_robust():
    classifier, (images, labels) = trained_classifier(), blobs(1)
    prototypes = blobs(1, seed=3)[0][:10]  # an image of each class
    seen = []

    def first(x, y):  # fools the classes 0-4: shows them the next class's image
        return torch.where((y < 5)[:, None, None, None], prototypes[(y + 1) % 10], x)

    def second(x, y):  # fools every image it is given but class 9
        seen.extend(y.tolist())
        return torch.where((y < 9)[:, None, None, None], prototypes[(y + 1) % 10], x)

    judge = lambda x, y: correct(classifier, x, y)  # noqa: E731
    adversarial = WorstCase([first, second], judge)(images, labels)
    assert sorted(seen) == [5, 6, 7, 8, 9]  # the second attack saw only what the first left robust
    assert judge(adversarial, labels).tolist() == [False] * 9 + [True]  # robust only where both failed
    assert torch.equal(adversarial[:5], prototypes[1:6])  # the first attack's images where it succeeded


def test_autoattack_is_the_worst_case_over_its_attacks_and_the_report_names_the_strongest(tmp_path):
    classifier, (images, labels) = trained_classifier(), blobs(1)
    settings = {"apgd-ce": {"max_iter": 5},
                "autoattack": {"apgd-ce": {"max_iter": 5}, "apgd-dlr": {"max_iter": 5}, "square": {"max_iter": 1000}}}
    results = evaluate(classifier, masking_defense(), images, labels, dataset="mnist", attacks="apgd-ce,autoattack",
                       threats="bpda", settings=settings, progress=False, out=tmp_path)
    apgd, worst = results["rows"][1:]
    assert apgd["accuracy_defended"] >= 0.8 and worst["accuracy_defended"] <= 0.2  # square got through
    assert worst["settings"]["square"]["max_iter"] == 1000 and worst["settings"]["apgd-dlr"]["eps"] == 0.3
    assert worst["settings"]["apgd-dlr"]["loss_type"] == "difference_logits_ratio"
    markdown = (tmp_path / "results.md").read_text()
    assert "Strongest attack run (lowest defended accuracy) under bpda: **autoattack** 0." in markdown
    assert "| autoattack | bpda |" in markdown and "apgd-ce: Linf, eps 0.3, step 0.6, iters 5, inits 1; apgd-dlr:" \
        in markdown


def test_warm_start_equals_cold_start_given_the_same_latent():
    images, _ = in_range(1, seed=2)
    options = {"optimizer": "adam", "lr": 0.1}
    warm = WarmStartProjector(GENERATOR, L=5, R=2, warm_L=4, **options)
    order = torch.tensor([7, 2, 9, 2])  # any subset, order and repeat of the session's images, as ART batches them
    moved = (images[order] + 0.01 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with warm.session(images):
        start = warm.latents.clone()
        out = warm(moved)
        expected = project(GENERATOR, moved, 4, 1, z0=start[order][:, None], **options)
        assert torch.equal(out, expected.images)  # the same latent in, the same projection out
        assert torch.equal(warm.latents[7], expected.z[0]) and torch.equal(warm.latents[0], start[0])
        again = warm(moved[:1])
        assert torch.equal(again, project(GENERATOR, moved[:1], 4, 1, z0=expected.z[:1, None], **options).images)
    assert warm.latents is None  # forgotten after the attack run: the next one starts cold
    torch.manual_seed(5)
    cold = warm(moved)
    torch.manual_seed(5)
    assert torch.equal(cold, project(GENERATOR, moved, 5, 2, **options).images)  # outside a session: cold


def test_warm_started_bpda_attacks_with_few_steps_and_is_recorded(tiny, tmp_path, monkeypatch):
    classifier, _, images, labels = tiny
    calls, real = [], defense_module.project
    monkeypatch.setattr(defense_module, "project", lambda generator, x, L, R, **options:
                        calls.append((L, R)) or real(generator, x, L, R, **options))
    defense = gan_defense(GENERATOR, seed=0, attacker_L=10, attacker_R=2, attacker_warm_L=3, **PROJECTION)
    results = evaluate(classifier, defense, images, labels, dataset="mnist", attacks="apgd-ce", threats="bpda",
                       settings={"apgd-ce": {"eps": EPS, "max_iter": 5}}, progress=False, out=tmp_path)
    row = results["rows"][1]
    assert row["accuracy_defended"] <= 0.2 and row["settings"]["attacker_warm_L"] == 3
    attacker = [call for call in calls if call != (30, 3)]  # the scorer's projections aside
    assert attacker.count((3, 1)) >= 2 * 5 and set(attacker) == {(10, 2), (3, 1)}
    assert "then warm-started: 3 steps from each image's latent" in (tmp_path / "results.md").read_text()
    with pytest.raises(ValueError, match="bpda-eot averages independent draws.*use bpda"):
        evaluate(classifier, defense, images, labels, dataset="mnist", attacks="fgsm", threats="bpda-eot")
