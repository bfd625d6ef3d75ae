"""How good a generator is: mode coverage, feature statistics and projection error.

The mode metrics follow HGAN's Table 1 (after MAD-GAN, Ghosh et al. 2018): a
trained classifier labels 10,000 generated samples, and the class histogram is
compared with the one it gives the test set, by KL divergence and by a
chi-square statistic. Comparing with the classifier's own test-set histogram
(not the true labels) lets the classifier's errors cancel out.

The Frechet distance is FID's formula on a trained *classifier's*
penultimate-layer features (Inception weights are out of reach offline), so it
is reported as "classifier FD": comparable between generators scored with the
same classifier, not with published FIDs.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import torch
from torch import nn

from defense_hgan.projection import check_images, project

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images (N, C, H, W) -> features (N, D)
BATCH_SIZE = 500
# Below this many samples the mode KL is mostly the noise of the sample histogram (its bias alone is
# about (classes - 1) / (2 n) nats, 0.0045 at n = 1000 for 10 classes): too large to compare generators.
MIN_SAMPLES_FOR_MODES = 1000


def class_histogram(classifier: nn.Module, images: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Counts (num_classes,) of the classifier's predicted class over ``images``."""
    logits = _batched(classifier, images, batch_size)  # (N, num_classes)
    return torch.bincount(logits.argmax(1), minlength=logits.shape[1])


def mode_kl(sample_hist: torch.Tensor, reference_hist: torch.Tensor, eps: float = 1e-10) -> float:
    """KL(p_reference || p_samples) in nats, the histograms normalised to distributions.

    MAD-GAN, whose numbers HGAN's Table 1 reuses, does not state the direction.
    This one (test set first) is the one that punishes dropped modes, which is
    what the experiment measures; the stacked-MNIST code of Unrolled GAN /
    VEEGAN / PacGAN uses the reverse, KL(generated || uniform). ``eps`` is
    added to both distributions (then renormalised) so an empty generated
    class costs p_ref * log(p_ref / eps), large but finite (~2 nats for one
    dropped MNIST digit).
    """
    p, q = _distribution(reference_hist, eps), _distribution(sample_hist, eps)
    return float((p * (p / q).log()).sum())


def mode_chi_square(sample_hist: torch.Tensor, reference_hist: torch.Tensor, eps: float = 1e-10) -> float:
    """Pearson's statistic sum (O - E)^2 / E, unscaled, of the sample counts O against E = n_samples * p_reference.

    HGAN's Table 1 prints "Chi-square (x10^5)" without its formula; divide by
    1e5 for those units, but the values need not be comparable. Under a
    perfect generator the statistic is about num_classes - 1 (its degrees of
    freedom). Classes empty in both histograms are left out; ``eps`` smooths
    p_reference as in ``mode_kl``, so samples in a class the reference never
    shows make the statistic huge but finite.
    """
    observed = sample_hist.double()
    expected = observed.sum() * _distribution(reference_hist, eps)
    seen = (sample_hist > 0) | (reference_hist > 0)
    return float(((observed - expected).square() / expected)[seen].sum())


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (N, D) and (M, D).

    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b), with
    tr sqrt(S_a S_b) taken as tr sqrt(sqrt(S_a) S_b sqrt(S_a)): the same
    eigenvalues, but of a symmetric PSD matrix, so float64 ``eigh`` gives it
    stably and without the complex parts a general ``sqrtm`` can leave.
    """
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D, "
                         f"got {tuple(features_a.shape)} and {tuple(features_b.shape)}")
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError(f"a covariance needs at least 2 samples per set, got {len(features_a)} and {len(features_b)}")
    mu_a, cov_a = _gaussian_fit(features_a)
    mu_b, cov_b = _gaussian_fit(features_b)
    root_a = _psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def classifier_frechet_distance(
    feature_fn: FeatureFn, real_images: torch.Tensor, fake_images: torch.Tensor, batch_size: int = BATCH_SIZE
) -> float:
    """Classifier FD: ``frechet_distance`` of ``feature_fn``'s features of real and generated images."""
    return frechet_distance(_batched(feature_fn, real_images, batch_size),
                            _batched(feature_fn, fake_images, batch_size))


def penultimate_features(classifier: nn.Module) -> FeatureFn:
    """images -> the input of the classifier's last layer (N, D).

    An ``nn.Sequential`` (MNIST models a-d) runs all but its last module; a
    module with a ``head`` (the CIFAR net) runs whole and the head's input is
    caught by a forward pre-hook.
    """
    if isinstance(classifier, nn.Sequential):
        return classifier[:-1]
    head = getattr(classifier, "head", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"cannot find the penultimate layer of a {type(classifier).__name__}: expected an "
                         f"nn.Sequential (features = all but the last module) or a module with a `head` layer")

    def features(images: torch.Tensor) -> torch.Tensor:
        caught = []
        handle = head.register_forward_pre_hook(lambda _module, inputs: caught.append(inputs[0]))
        try:
            classifier(images)
        finally:
            handle.remove()
        return caught[0]

    return features


def projection_mse(generator: nn.Module, images: torch.Tensor, L: int = 200, R: int = 10, seed: int = 0) -> float:
    """Mean over ``images`` of the best-restart MSE of projecting them onto the generator's range."""
    return float(project(generator, images, L=L, R=R, seed=seed).error.mean())


def generator_metrics(
    generator: nn.Module,
    classifier: nn.Module,
    test_images: torch.Tensor,
    n_samples: int = 10_000,
    n_project: int = 200,
    L: int = 200,
    R: int = 10,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> dict:
    """Every metric of this module for one generator, scored against held-out ``test_images``.

    ``n_samples`` images are generated from z ~ N(0, I) (a torch.Generator
    seeded with ``seed``, so the same seed gives the same samples on any
    device) and labelled / featurised by ``classifier``; the first
    ``n_project`` test images are projected with L steps and R restarts
    (``n_project=0`` skips it). Both models run in eval mode on the
    generator's device and are restored afterwards.
    """
    check_images(generator, test_images)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (a covariance needs two samples), got {n_samples}")
    if not 0 <= n_project <= len(test_images):
        raise ValueError(f"n_project must be between 0 and the {len(test_images)} test images, got {n_project}")
    if n_samples < MIN_SAMPLES_FOR_MODES:
        warnings.warn(f"n_samples={n_samples} is below {MIN_SAMPLES_FOR_MODES}: the mode KL and chi-square of so few "
                      f"samples are noise, meaningless for comparing generators (the paper uses 10,000)")
    device = next(generator.parameters()).device
    test_images = test_images.to(device)
    with _eval_mode(generator, classifier):
        _check_classifier(classifier, test_images)
        fake = _sample(generator, n_samples, seed, batch_size, progress)
        sample_hist = class_histogram(classifier, fake, batch_size)
        reference_hist = class_histogram(classifier, test_images, batch_size)
        fd = classifier_frechet_distance(penultimate_features(classifier), test_images, fake, batch_size)
        mse = projection_mse(generator, test_images[:n_project], L, R, seed) if n_project else None
    return {
        "mode_kl": mode_kl(sample_hist, reference_hist),
        "mode_chi_square": mode_chi_square(sample_hist, reference_hist),
        "classifier_fd": fd,
        "projection_mse": mse,
        "sample_histogram": sample_hist.tolist(),
        "reference_histogram": reference_hist.tolist(),
        "n_samples": n_samples, "n_reference": len(test_images), "n_project": n_project,
        "L": L, "R": R, "seed": seed,
    }


def _sample(generator: nn.Module, n: int, seed: int, batch_size: int, progress: bool) -> torch.Tensor:
    """n generated images; z drawn at once on the CPU, so a seed gives the same samples on any device and batch size."""
    from tqdm.auto import tqdm

    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    with torch.no_grad():
        return torch.cat([generator(z[i : i + batch_size].to(device))
                          for i in tqdm(range(0, n, batch_size), desc="sampling", unit="batch", disable=not progress)])


def _batched(fn: FeatureFn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """fn over images in batches, without gradients; outputs flattened to (N, D)."""
    with torch.no_grad():
        return torch.cat([fn(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]).flatten(1)


def _distribution(hist: torch.Tensor, eps: float) -> torch.Tensor:
    if hist.dim() != 1 or not hist.sum() > 0 or (hist < 0).any():
        raise ValueError(f"a histogram must be 1-D non-negative counts with a positive total, got {hist.tolist()}")
    p = hist.double() / hist.sum() + eps
    return p / p.sum()


def _gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def _check_classifier(classifier: nn.Module, images: torch.Tensor) -> None:
    """One image through the classifier, so a model for another image shape fails here in plain words."""
    try:
        with torch.no_grad():
            logits = classifier(images[:1])
    except RuntimeError as err:
        raise ValueError(f"the classifier cannot take images of shape {tuple(images.shape[1:])} "
                         f"({str(err).splitlines()[0]}); was it trained on another dataset?") from None
    if logits.dim() != 2:
        raise ValueError(f"the classifier must return logits (N, num_classes), got shape {tuple(logits.shape)}")


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module):
    """Eval mode (no dropout, BatchNorm's running statistics) for the duration, each module's mode restored after."""
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, training in zip(modules, was_training):
            m.train(training)
