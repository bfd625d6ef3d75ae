import json
import math
import subprocess
import sys

import pytest
import scipy.linalg
import torch
from torch import nn

from classifiers import build_classifier
from defense_hgan.classifier_io import save_classifier
from defense_hgan.generator_io import save_generator
from defense_hgan.generators import build_generator
from defense_hgan.metrics import (
    class_histogram, frechet_distance, generator_metrics, mode_chi_square, mode_kl, penultimate_features,
    projection_mse,
)


class TinyGenerator(nn.Module):
    """8-d latent -> 1x28x28 image in [0, 1]."""

    latent_dim = 8
    image_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 28 * 28)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).view(-1, 1, 28, 28)


def gaussian(n, mean, std, seed):
    """(n, D) samples of N(mean, diag(std^2))."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) * torch.tensor(std) + torch.tensor(mean)


def test_class_histogram_counts_the_predicted_classes():
    classifier = nn.Flatten()  # "logits" = the 3 pixel values, so the argmax is the brightest pixel
    images = torch.eye(3)[[0, 2, 2, 1, 2]].view(5, 3, 1, 1)
    assert class_histogram(classifier, images, batch_size=2).tolist() == [1, 1, 3]


def test_kl_and_chi_square_are_zero_for_proportional_histograms():
    hist = torch.tensor([5, 3, 2])
    assert mode_kl(hist, hist) == pytest.approx(0, abs=1e-9)
    assert mode_kl(2 * hist, hist) == pytest.approx(0, abs=1e-9)
    assert mode_chi_square(hist, hist) == pytest.approx(0, abs=1e-9)


def test_classes_empty_in_both_histograms_add_nothing():
    hist, padded = torch.tensor([5, 3]), torch.tensor([5, 3, 0, 0])
    assert mode_kl(padded, padded) == pytest.approx(0, abs=1e-12)
    assert mode_chi_square(padded, padded) == pytest.approx(0, abs=1e-12)
    assert mode_kl(padded, 2 * padded) == pytest.approx(mode_kl(hist, 2 * hist), abs=1e-12)


def test_kl_is_the_reference_against_the_samples():
    samples, reference = torch.tensor([30, 10]), torch.tensor([20, 20])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(reference || samples)
    assert mode_kl(samples, reference) == pytest.approx(expected, rel=1e-6)


def test_chi_square_is_pearsons_statistic_against_the_reference_proportions():
    samples, reference = torch.tensor([30, 10]), torch.tensor([50, 50])  # 40 samples: 20 expected per class
    assert mode_chi_square(samples, reference) == pytest.approx((10**2 + 10**2) / 20, rel=1e-6)


def test_kl_is_finite_and_large_for_a_dropped_class():
    kl = mode_kl(torch.tensor([50, 50, 0]), torch.tensor([1, 1, 1]))
    assert math.isfinite(kl) and kl > 1


def test_an_empty_histogram_is_refused():
    with pytest.raises(ValueError, match="positive total"):
        mode_kl(torch.zeros(3), torch.ones(3))


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = gaussian(500, [0.0, 1.0, 2.0], [1.0, 2.0, 0.5], seed=0)
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_is_symmetric():
    a = gaussian(300, [0.0, 0.0], [1.0, 2.0], seed=0) @ torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    b = gaussian(300, [1.0, 0.0], [2.0, 1.0], seed=1)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # N(m_a, diag(s_a^2)) vs N(m_b, diag(s_b^2)): |m_a - m_b|^2 + |s_a - s_b|^2
    a = gaussian(50_000, [0.0, 0.0], [1.0, 2.0], seed=0)
    b = gaussian(50_000, [1.0, 2.0], [1.0, 1.0], seed=1)
    assert frechet_distance(a, b) == pytest.approx(5 + 1, abs=0.1)


def test_frechet_distance_matches_scipy_sqrtm_for_correlated_covariances():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(200, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    cov_a, cov_b = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    expected = ((a.mean(0) - b.mean(0)).square().sum().item() + cov_a.trace() + cov_b.trace()
                - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real.trace())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dataset, arch, shape, width", [
    ("mnist", "a", (1, 28, 28), 128), ("mnist", "d", (1, 28, 28), 200), ("cifar10", "fast", (3, 32, 32), 128),
])
def test_penultimate_features_have_the_last_layers_width(dataset, arch, shape, width):
    classifier = build_classifier(dataset, arch).eval()
    assert penultimate_features(classifier)(torch.rand(3, *shape)).shape == (3, width)


def test_penultimate_features_are_what_the_last_layer_maps_to_logits():
    classifier = build_classifier("mnist", "a").eval()
    images = torch.rand(3, 1, 28, 28)
    assert torch.allclose(classifier[-1](penultimate_features(classifier)(images)), classifier(images))


def test_penultimate_features_leave_no_hook_behind():
    classifier = build_classifier("cifar10", "fast").eval()
    penultimate_features(classifier)(torch.rand(2, 3, 32, 32))
    assert not classifier.head._forward_pre_hooks


def test_penultimate_features_of_an_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="penultimate"):
        penultimate_features(nn.Linear(3, 2))


def test_projection_mse_is_near_zero_for_the_generators_own_image():
    generator = TinyGenerator()
    with torch.no_grad():
        images = generator(torch.zeros(2, 8))
    noise = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    own, other = projection_mse(generator, images, L=30, R=2), projection_mse(generator, noise, L=30, R=2)
    assert 0 <= own < other


def test_generator_metrics_end_to_end():
    torch.manual_seed(0)
    generator, classifier = TinyGenerator(), build_classifier("mnist", "d")
    test_images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="n_samples=30 is below 1000"):
        result = generator_metrics(generator, classifier, test_images, n_samples=30, n_project=3, L=2, R=2,
                                   batch_size=16, progress=False)
    assert {"mode_kl", "mode_chi_square", "classifier_fd", "projection_mse", "sample_histogram",
            "reference_histogram", "n_samples", "n_project", "L", "R", "seed"} <= set(result)
    assert sum(result["sample_histogram"]) == 30 and sum(result["reference_histogram"]) == 40
    assert all(math.isfinite(result[k]) and result[k] >= 0
               for k in ("mode_kl", "mode_chi_square", "classifier_fd", "projection_mse"))
    assert classifier.training  # the caller's mode is restored
    with pytest.warns(UserWarning, match="meaningless"):
        again = generator_metrics(generator, classifier, test_images, n_samples=30, n_project=3, L=2, R=2,
                                  batch_size=7, progress=False)
    for key, value in result.items():  # seeded, and independent of the batch size
        assert again[key] == (pytest.approx(value) if isinstance(value, float) else value)


def test_generator_metrics_refuse_images_of_another_shape():
    with pytest.raises(ValueError, match="channels"):
        generator_metrics(TinyGenerator(), build_classifier("mnist", "d"), torch.rand(4, 3, 28, 28), n_samples=4)


@pytest.mark.filterwarnings("ignore:n_samples=4 is below")
def test_generator_metrics_refuse_a_classifier_for_another_image_size():
    classifier_of_10_pixels = nn.Sequential(nn.Flatten(), nn.Linear(10, 10))
    with pytest.raises(ValueError, match="classifier cannot take"):
        generator_metrics(TinyGenerator(), classifier_of_10_pixels, torch.rand(4, 1, 28, 28),
                          n_samples=4, n_project=0, progress=False)


@pytest.fixture
def checkpoints(tmp_path):
    torch.manual_seed(0)
    options = {"width": 8}
    save_generator(build_generator("dcgan", "mnist", **options), tmp_path / "generator.pt", "dcgan", "mnist", options)
    save_classifier(build_classifier("mnist", "d"), tmp_path / "classifier.pt",
                    {"dataset": "mnist", "arch": "d", "options": {}})
    save_classifier(build_classifier("fashion-mnist", "d"), tmp_path / "fashion.pt",
                    {"dataset": "fashion-mnist", "arch": "d", "options": {}})
    return tmp_path


def run_metrics(checkpoints, mnist_root, *flags):
    return subprocess.run(
        [sys.executable, "-m", "defense_hgan", "metrics", "--generator", str(checkpoints / "generator.pt"),
         "--data-root", str(mnist_root), "--n-samples", "20", "--n-project", "2", "--L", "2", "--R", "2",
         "--device", "cpu", *flags],
        capture_output=True, text=True,
    )


def test_cli_metrics_prints_and_writes_json(checkpoints, mnist_root):
    out = checkpoints / "metrics.json"
    result = run_metrics(checkpoints, mnist_root, "--classifier", str(checkpoints / "classifier.pt"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "mode_kl" in result.stdout and "classifier_fd" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "mnist" and metrics["n_samples"] == 20 and metrics["n_project"] == 2
    assert "n_samples=20 is below 1000" in result.stderr and "meaningless" in result.stderr
    assert sum(metrics["reference_histogram"]) == 32  # the synthetic test split


def test_cli_metrics_refuses_fewer_than_two_samples(checkpoints, mnist_root):
    result = run_metrics(checkpoints, mnist_root, "--classifier", str(checkpoints / "classifier.pt"), "--n-samples", "1")
    assert result.returncode != 0
    assert "--n-samples must be an integer >= 2, got '1'" in result.stderr and "Traceback" not in result.stderr


def test_cli_metrics_refuses_a_classifier_of_another_dataset(checkpoints, mnist_root):
    result = run_metrics(checkpoints, mnist_root, "--classifier", str(checkpoints / "fashion.pt"))
    assert result.returncode != 0
    assert "trained on fashion-mnist" in result.stderr and "Traceback" not in result.stderr
