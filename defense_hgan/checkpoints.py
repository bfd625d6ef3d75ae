"""One-file checkpoints: weights plus the config that rebuilds the model.

Files are written atomically (temp file + rename, so a crash never leaves a
half-written checkpoint) and read with ``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects: only tensors and plain containers load.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from defense_hgan.atomic import atomic_write
from defense_hgan.devices import resolve_device

FORMAT = "defense-hgan"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or of the wrong kind."""


def save_checkpoint(path: str | os.PathLike, kind: str, config: dict, state: dict[str, Any]) -> Path:
    """Atomically write ``{format, kind, config, **state}``; tensors are moved to CPU."""
    path = Path(path)
    payload = {"format": FORMAT, "kind": kind, "config": dict(config), **_to_cpu(state)}
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` on CPU, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; expected a {kind} file written by defense-hgan")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"it is corrupt or not a defense-hgan {kind} checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a defense-hgan checkpoint (no '{FORMAT}' format marker)")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} checkpoint, expected a {kind!r} one")
    return payload


def load_model(
    path: str | os.PathLike, kind: str, build: Callable[[dict], nn.Module], device: str | torch.device = "auto"
) -> nn.Module:
    """Rebuild a ``kind`` model with ``build(config)``, load its weights, return it in eval mode on ``device``."""
    payload = load_checkpoint(path, kind)
    try:
        model = build(dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the {kind} could not be rebuilt from its config ({err})") from None
    return model.to(resolve_device(device)).eval()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
