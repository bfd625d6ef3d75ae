"""defense-hgan: trained GAN generators as Defense-GAN adversarial defenses.

Images are float NCHW in [0, 1] at every public function.
"""
from defense_hgan.checkpoints import CheckpointError
from defense_hgan.classifier_io import load_classifier
from defense_hgan.data import DatasetNotFoundError, load_dataset
from defense_hgan.generator_io import load_generator

__all__ = ["CheckpointError", "DatasetNotFoundError", "load_classifier", "load_dataset", "load_generator"]
