"""defense-hgan: trained GAN generators as Defense-GAN adversarial defenses.

Images are float NCHW in [0, 1] at every public function.
"""
from defense_hgan.checkpoints import CheckpointError
from defense_hgan.classifier_io import load_classifier
from defense_hgan.data import DatasetNotFoundError, load_dataset
from defense_hgan.defense import Defense, defend, gan_defense
from defense_hgan.generator_io import load_generator
from defense_hgan.projection import Projection, project

__all__ = [
    "CheckpointError", "DatasetNotFoundError", "Defense", "Projection", "defend", "gan_defense",
    "load_classifier", "load_dataset", "load_generator", "project",
]
