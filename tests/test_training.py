import torch

from classifiers import build_classifier
from classifiers.training import MNIST_RECIPE, CIFAR_RECIPE, accuracy, flip_and_translate, train_classifier
from dataclasses import replace


def _separable_set(n, shape, seed):
    """Noise with a bright band of rows whose position is the class: learnable in one epoch."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = 0.3 * torch.rand(n, *shape, generator=gen)
    for c in range(10):
        images[labels == c, :, 2 * c:2 * c + 3, :] = 1.0
    return images, labels


def test_one_epoch_on_a_tiny_set_lowers_the_loss():
    torch.manual_seed(0)
    model = build_classifier("mnist", "d")
    train = _separable_set(640, (1, 28, 28), seed=0)
    recipe = replace(MNIST_RECIPE, batch_size=32)
    before = torch.nn.functional.cross_entropy(model.eval()(train[0]), train[1]).item()
    metrics = train_classifier(model, train, train, epochs=1, recipe=recipe, device="cpu", seed=0, progress=False)
    after = torch.nn.functional.cross_entropy(model.eval()(train[0]), train[1]).item()
    assert after < before * 0.8
    assert set(metrics) >= {"test_accuracy", "epochs", "seconds", "seed", "device"}
    assert metrics["device"] == "cpu" and metrics["seed"] == 0


def test_cifar_recipe_trains_the_fast_net():
    torch.manual_seed(0)
    model = build_classifier("cifar10", "fast", widths=(8, 16, 16))
    train = _separable_set(256, (3, 32, 32), seed=1)
    recipe = replace(CIFAR_RECIPE, batch_size=32)
    metrics = train_classifier(model, train, train, epochs=3, recipe=recipe, device="cpu", seed=0, progress=False)
    assert metrics["train_loss_per_epoch"][-1] < metrics["train_loss_per_epoch"][0]
    assert accuracy(model, *train) > 0.3


def test_training_is_deterministic_under_a_seed():
    train = _separable_set(128, (1, 28, 28), seed=0)
    recipe = replace(MNIST_RECIPE, batch_size=32)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_classifier("mnist", "d")
        losses.append(train_classifier(model, train, train, 1, recipe, "cpu", seed=3, progress=False)["train_loss_per_epoch"])
    assert losses[0] == losses[1]


def test_flip_and_translate_keeps_shape_and_moves_pixels_by_at_most_two():
    images = torch.zeros(16, 3, 32, 32)
    images[:, :, 16, 16] = 1.0
    out = flip_and_translate(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    rows, cols = out[:, 0].flatten(1).argmax(1) // 32, out[:, 0].flatten(1).argmax(1) % 32
    assert ((rows - 16).abs() <= 2).all()
    assert (((cols - 16).abs() <= 2) | ((cols - 15).abs() <= 2)).all()  # flipped: column 15
    assert torch.equal(out.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))


def test_fine_tuning_keeps_the_whitening_stem_a_fresh_run_derives_from_its_data():
    torch.manual_seed(0)
    model = build_classifier("cifar10", "fast", widths=(8, 16, 16))
    first = _separable_set(64, (3, 32, 32), seed=1)
    recipe = replace(CIFAR_RECIPE, batch_size=32)
    train_classifier(model, first, first, epochs=1, recipe=recipe, device="cpu", seed=0, progress=False)
    stem = model.whiten.weight.clone()
    other = (first[0].flip(-2) * 0.5, first[1])  # data with another patch covariance
    train_classifier(model, other, other, epochs=1, recipe=recipe, device="cpu", seed=0, progress=False,
                     fresh=False)
    assert torch.equal(model.whiten.weight, stem)
    train_classifier(model, other, other, epochs=1, recipe=recipe, device="cpu", seed=0, progress=False)
    assert not torch.allclose(model.whiten.weight, stem)
