import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from defense_hgan.art_defense import DefenseGANPreprocessor, art_classifier
from defense_hgan.defense import DefendedClassifier, defend
from defense_hgan.projection import project
from tests.test_projection import TinyGenerator, noise

OPTIONS = {"L": 10, "R": 3, "seed": 0}


@pytest.fixture
def generator():
    return TinyGenerator()


@pytest.fixture
def classifier():
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).eval()


def projected(generator, x):
    return project(generator, x, **OPTIONS).images


def test_defended_logits_are_the_classifier_on_the_projection(generator, classifier):
    x = noise(4)
    defended = defend(classifier, generator, **OPTIONS)
    assert isinstance(defended, DefendedClassifier)
    with torch.no_grad():
        assert torch.equal(defended(x), classifier(projected(generator, x)))
    assert torch.equal(defended.project(x), projected(generator, x))


def test_defended_module_passes_gradients_as_the_identity(generator, classifier):
    x, y = noise(4), torch.tensor([0, 1, 2, 3])
    x_adv = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(defend(classifier, generator, **OPTIONS)(x_adv), y).backward()
    at_projection = projected(generator, x).requires_grad_(True)
    nn.functional.cross_entropy(classifier(at_projection), y).backward()
    assert torch.allclose(x_adv.grad, at_projection.grad)


def test_art_classifier_predicts_on_the_projection(generator, classifier):
    x = noise(4)
    art = art_classifier(classifier, generator, **OPTIONS)
    assert isinstance(art, PyTorchClassifier)
    with torch.no_grad():
        expected = classifier(projected(generator, x)).numpy()
    assert np.allclose(art.predict(x.numpy()), expected, atol=1e-6)


def test_art_gradients_are_bpda_the_bare_gradients_at_the_projection(generator, classifier):
    x, y = noise(4), np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    defended = art_classifier(classifier, generator, **OPTIONS)
    bare = art_classifier(classifier, input_shape=(1, 8, 8))
    at_projection = projected(generator, x).numpy()
    assert np.allclose(defended.loss_gradient(x.numpy(), y), bare.loss_gradient(at_projection, y), atol=1e-6)
    assert np.allclose(defended.class_gradient(x.numpy(), label=3), bare.class_gradient(at_projection, label=3),
                       atol=1e-6)


def test_preprocessor_gradient_estimate_is_the_identity(generator):
    defence = DefenseGANPreprocessor(generator, **OPTIONS)
    x = noise(3).numpy()
    grad = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    assert np.array_equal(defence.estimate_gradient(x, grad), grad)
    assert defence.apply_predict and not defence.apply_fit


def test_preprocessor_call_returns_the_projection_and_keeps_labels(generator):
    defence = DefenseGANPreprocessor(generator, **OPTIONS)
    x, y = noise(3), np.arange(3)
    out, labels = defence(x.numpy(), y)
    assert np.allclose(out, projected(generator, x).numpy())
    assert np.array_equal(labels, y)


def test_art_classifier_needs_a_shape_without_a_generator(classifier):
    with pytest.raises(ValueError, match="input_shape"):
        art_classifier(classifier)


def test_defended_module_refuses_bad_images(generator, classifier):
    with pytest.raises(ValueError, match="28x28, the generator makes 8x8"):
        defend(classifier, generator, **OPTIONS)(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_defended_module_takes_images_of_any_float_dtype(generator, classifier, dtype):
    x = noise(4)
    defended = defend(classifier, generator, **OPTIONS)
    with torch.no_grad():
        logits = defended(x.to(dtype))
        projection = defended.project(x.to(dtype))  # in the images' dtype
        assert projection.dtype == dtype and logits.dtype == torch.float32
        assert torch.equal(logits, classifier(projection.float()))
        assert torch.allclose(logits, defended(x), atol=1e-2 if dtype == torch.float16 else 1e-6)


def _cifar_classifier_and_mnist_generator(tmp_path):
    from classifiers import build_classifier
    from defense_hgan.classifier_io import load_classifier, save_classifier
    from defense_hgan.generator_io import load_generator, save_generator
    from defense_hgan.generators import build_generator

    torch.manual_seed(0)
    save_classifier(build_classifier("cifar10", "fast"), tmp_path / "c.pt", {"dataset": "cifar10", "arch": "fast"})
    options = {"latent_dim": 8, "width": 4}
    save_generator(build_generator("dcgan", "mnist", **options), tmp_path / "g.pt", "dcgan", "mnist", options)
    return load_classifier(tmp_path / "c.pt"), load_generator(tmp_path / "g.pt")


def test_a_classifier_and_a_generator_of_other_datasets_are_refused(tmp_path):
    cifar_classifier, mnist_generator = _cifar_classifier_and_mnist_generator(tmp_path)
    message = "the classifier was trained on cifar10, but the generator on mnist; pair models trained on one dataset"
    with pytest.raises(ValueError, match=message):
        defend(cifar_classifier, mnist_generator, **OPTIONS)
    with pytest.raises(ValueError, match=message):
        art_classifier(cifar_classifier, mnist_generator, **OPTIONS)
