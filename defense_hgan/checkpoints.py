"""One-file checkpoints: weights plus the config that rebuilds the model.

Files are written atomically (temp file + rename, so a crash never leaves a
half-written checkpoint) and read with ``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects: only tensors and plain containers load.

A loaded model carries the dataset it was trained on (``model.dataset``), so
that a classifier and a generator of different datasets are refused
(``check_trained_on``). Results identify a checkpoint by the sha256 of its bytes
(``file_sha256``), not by how its path is spelled.
"""
from __future__ import annotations

import hashlib
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


def load_checkpoint(path: str | os.PathLike, kind: str | tuple[str, ...]) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` (or of any of several kinds) on CPU, with a clear error for anything else."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    expected = " or ".join(kinds)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; expected a {expected} file written by defense-hgan")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or download? "
                              f"expected a {expected} file written by defense-hgan")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = (str(err).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {reason}); "
            f"it is corrupt or not a defense-hgan {expected} checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a defense-hgan checkpoint (no '{FORMAT}' format marker)")
    if payload.get("kind") not in kinds:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} checkpoint, "
                              f"expected a {' or '.join(map(repr, kinds))} one")
    return payload


def load_model(
    path: str | os.PathLike, kind: str, build: Callable[[dict], nn.Module], device: str | torch.device = "auto"
) -> nn.Module:
    """Rebuild a ``kind`` model with ``build(config)``, load its weights, return it in eval mode on ``device``.

    The model's ``dataset`` attribute is the dataset its config records, for ``check_trained_on``.
    """
    payload = load_checkpoint(path, kind)
    try:
        model = build(dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the {kind} could not be rebuilt from its config ({err})") from None
    model.dataset = payload["config"].get("dataset")
    return model.to(resolve_device(device)).eval()


def check_trained_on(dataset: str | None = None, **models) -> None:
    """Refuse models trained on another dataset than ``dataset`` or than each other, naming both datasets.

    Each keyword is a model's kind (classifier, generator) and gives the model
    or its checkpoint path (None: nothing to check). A path's dataset is read
    from its config, a model's from the ``dataset`` that ``load_model`` set; a
    model built in memory has none and is not checked (``project`` still
    refuses images of another shape than its generator's).
    """
    known = []  # (kind, dataset, how to name the model) of the models whose dataset is known
    for kind, model in models.items():
        if isinstance(model, (str, os.PathLike)):
            trained_on, name = load_checkpoint(model, kind)["config"].get("dataset"), f"the {kind} {model}"
        else:
            trained_on, name = getattr(model, "dataset", None), f"the {kind}"
        if trained_on is not None:
            known.append((kind, trained_on, name))
    for kind, trained_on, name in known:
        if dataset is not None and trained_on != dataset:
            raise ValueError(f"{name} was trained on {trained_on}, but the dataset is {dataset}; "
                             f"pass a {kind} trained on {dataset}, or the dataset {trained_on}")
    for (_, first, first_name), (_, second, second_name) in zip(known, known[1:]):
        if first != second:
            raise ValueError(f"{first_name} was trained on {first}, but {second_name} on {second}; "
                             f"pair models trained on one dataset")


def file_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 of the file ``path`` names, what identifies a checkpoint in results; None if it names no file.

    None happens for a name a library caller gave instead of a path; such
    names are compared as paths (``checkpoint_difference``).
    """
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_difference(kind: str, stored: str, stored_sha256: str | None, path: str,
                          sha256: str | None) -> str | None:
    """Why checkpoint ``path`` is not the ``kind`` that stored results were made with, or None when it is.

    Two checkpoints are the same when their sha256 match, whatever their
    paths; when neither has one (names, not files), when the paths name the
    same file (``./zoo/x.pt`` is ``zoo/x.pt``). One with a sha256 cannot be
    checked against one without: results of an older version, which recorded
    paths only, are refused rather than trusted. The reason reads after
    "results with ...".
    """
    if stored_sha256 and sha256:
        if stored_sha256 == sha256:
            return None
        now = ("that file has changed since: it was replaced" if same_file(stored, path)
               else f"this one has {str(path)!r}")
        return f"{kind} {stored!r} of sha256 {stored_sha256[:12]}, but {now} (sha256 {sha256[:12]})"
    if not stored_sha256 and not sha256:
        return None if same_file(stored, path) else f"{kind} {stored!r}, but this one has {str(path)!r}"
    if sha256:
        return (f"{kind} {stored!r} recorded by path only (an older version wrote it), so this run cannot check "
                f"that {str(path)!r} (sha256 {sha256[:12]}) is the same file")
    return f"{kind} {stored!r} of sha256 {stored_sha256[:12]}, but this one has {str(path)!r}, no file to check"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file, however spelled (relative, absolute, ./, symlinks)."""
    return Path(a).resolve() == Path(b).resolve()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
