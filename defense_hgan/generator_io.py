"""Save and rebuild generators from one checkpoint file, with none of the training state."""
from __future__ import annotations

import os

import torch
from torch import nn

from defense_hgan.checkpoints import load_model, save_checkpoint
from defense_hgan.generators import build_generator

KIND = "generator"


def save_generator(generator: nn.Module, path: str | os.PathLike, model: str, dataset: str, options: dict) -> None:
    """``options`` are the ones ``build_generator(model, dataset, **options)`` was given."""
    config = {"model": model, "dataset": dataset, "latent_dim": generator.latent_dim, "options": dict(options)}
    save_checkpoint(path, KIND, config, {"state_dict": generator.state_dict()})


def load_generator(path: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """Rebuild a saved generator in eval mode on ``device``: z (N, latent_dim) -> images (N, C, H, W) in [0, 1]."""

    def build(config: dict) -> nn.Module:
        return build_generator(config["model"], config["dataset"], **config.get("options", {}))

    return load_model(path, KIND, build, device)
