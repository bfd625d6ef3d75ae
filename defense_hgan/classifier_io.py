"""Save and rebuild classifiers from one checkpoint file."""
from __future__ import annotations

import os

import torch
from torch import nn

from defense_hgan.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from defense_hgan.devices import resolve_device

KIND = "classifier"


def save_classifier(model: nn.Module, path: str | os.PathLike, config: dict) -> None:
    """``config`` holds what ``build_classifier`` needs: dataset, arch and options."""
    save_checkpoint(path, KIND, config, {"state_dict": model.state_dict()})


def load_classifier(path: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """Rebuild a saved classifier in eval mode on ``device`` (images in [0, 1] NCHW -> logits)."""
    from classifiers import build_classifier

    payload = load_checkpoint(path, KIND)
    config = dict(payload["config"])
    try:
        model = build_classifier(config.pop("dataset"), config.pop("arch"), **config.get("options", {}))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the classifier could not be rebuilt from its config ({err})") from None
    return model.to(resolve_device(device)).eval()
