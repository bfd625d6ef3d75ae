"""Defense-GAN-Rec, cheaply: a classifier fine-tuned on a generator's reconstructions of training images.

Defense-GAN's best variant trains its classifier on G(z*) of the training set
(kabkabm/defensegan, ``blackbox.py --train_on_recs``), so that the classifier
reads the generator's range, blurred as it is, and not only sharp images.
Projecting every training image at L=200, R=10 costs hours on a CPU, so this
takes n random training images, reconstructs them with a short projection
(L=50, R=2 by default), and fine-tunes the trained classifier for a few epochs
on the images and their reconstructions together (Adam 3e-4, batch 128,
whichever recipe first trained it). The defense then
projects as usual (L=200, R=10) in front of the tuned classifier.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from classifiers.training import Recipe, train_classifier
from defense_hgan.checkpoints import check_trained_on
from defense_hgan.projection import project

RECIPE = Recipe(optimizer="adam", batch_size=128, lr=3e-4)


def tune_on_reconstructions(
    classifier: nn.Module,
    generator: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    n: int,
    L: int = 50,
    R: int = 2,
    epochs: int = 2,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> tuple[nn.Module, dict]:
    """(a fine-tuned copy of ``classifier`` in eval mode, its metrics); ``classifier`` itself is left as it was.

    ``train`` are the training images ([0, 1] NCHW) and labels the n are drawn from (seed ``seed``); their
    projection uses seed ``seed + 1`` on the generator's device. The metrics are ``train_classifier``'s (test
    accuracy on ``test``) plus n, L and R.
    """
    check_trained_on(classifier=classifier, generator=generator)
    images, labels = train
    if not 1 <= n <= len(images):
        raise ValueError(f"the training images to reconstruct (--images) must be 1 to {len(images)}, the size of "
                         f"the training set; got {n!r}")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    on_generator = images[pick].to(next(generator.parameters()).device)
    reconstructions = project(generator, on_generator, L=L, R=R, seed=seed + 1, progress=progress).images
    reconstructions = reconstructions.to(images.device)
    tuned = copy.deepcopy(classifier)
    pairs = (torch.cat([images[pick], reconstructions]), torch.cat([labels[pick], labels[pick]]))
    metrics = train_classifier(tuned, pairs, test, epochs=epochs, recipe=RECIPE, device=device, seed=seed,
                               progress=progress, fresh=False)
    return tuned.eval(), {**metrics, "images": n, "L": L, "R": R}
