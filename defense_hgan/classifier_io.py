"""Save and rebuild classifiers from one checkpoint file."""
from __future__ import annotations

import os

import torch
from torch import nn

from defense_hgan.checkpoints import load_model, save_checkpoint

KIND = "classifier"


def save_classifier(model: nn.Module, path: str | os.PathLike, config: dict) -> None:
    """``config`` holds what ``build_classifier`` needs: dataset, arch and options."""
    save_checkpoint(path, KIND, config, {"state_dict": model.state_dict()})


def load_classifier(path: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """Rebuild a saved classifier in eval mode on ``device`` (images in [0, 1] NCHW -> logits)."""
    from classifiers import build_classifier

    def build(config: dict) -> nn.Module:
        return build_classifier(config["dataset"], config["arch"], **config.get("options", {}))

    return load_model(path, KIND, build, device)
