"""Defense-GAN inside the Adversarial Robustness Toolbox: a preprocessor and a ready classifier.

Kept apart from ``defense.py`` because importing ART takes seconds; only
attack code needs it.
"""
from __future__ import annotations

from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification import PyTorchClassifier
import torch
from torch import nn

from defense_hgan.checkpoints import check_trained_on
from defense_hgan.defense import Projector


class DefenseGANPreprocessor(PreprocessorPyTorch):
    """Defense-GAN as an ART preprocessor, in the manner of ART's ``SpatialSmoothingPyTorch``.

    ``forward`` returns the projections (identity gradient, so ART's
    ``loss_gradient`` / ``class_gradient`` are BPDA gradients) and
    ``estimate_forward`` is the identity itself, so ART's ``estimate_gradient``
    returns the incoming gradient unchanged without projecting. Inputs are
    NCHW in [0, 1]. Options as in ``project``.
    """

    def __init__(self, generator: nn.Module, L: int = 200, R: int = 10,
                 apply_fit: bool = False, apply_predict: bool = True, **options):
        super().__init__(device_type=_device_type(generator), apply_fit=apply_fit, apply_predict=apply_predict)
        self.projector = Projector(generator, L, R, **options)

    def forward(self, x: torch.Tensor, y=None):
        return self.projector(x), y

    def estimate_forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return x


def art_classifier(classifier: nn.Module, generator: nn.Module | None = None, L: int = 200, R: int = 10, *,
                   input_shape: tuple[int, int, int] | None = None, nb_classes: int = 10, **options):
    """An ART ``PyTorchClassifier`` (cross-entropy, clip values (0, 1)), defended when a generator is given.

    ``input_shape`` defaults to the generator's ``image_shape``; without a
    generator the bare classifier is wrapped, the baseline to compare against.
    A classifier and a generator trained on different datasets are refused.
    """
    check_trained_on(classifier=classifier, generator=generator)
    if input_shape is None:
        if generator is None:
            raise ValueError("art_classifier needs input_shape=(C, H, W) when no generator is given")
        input_shape = tuple(generator.image_shape)
    defences = [] if generator is None else [DefenseGANPreprocessor(generator, L, R, **options)]
    return PyTorchClassifier(
        model=classifier, loss=nn.CrossEntropyLoss(), input_shape=tuple(input_shape), nb_classes=nb_classes,
        clip_values=(0.0, 1.0), preprocessing_defences=defences, device_type=_device_type(classifier),
    )


def _device_type(module: nn.Module) -> str:
    """ART's name for where the module's parameters live."""
    return "gpu" if any(p.is_cuda for p in module.parameters()) else "cpu"
