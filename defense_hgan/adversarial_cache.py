"""Oblivious adversarial images kept on disk, so that evaluating another generator skips crafting them.

Under the oblivious threat an attack crafted against the bare classifier
(FGSM, PGD, CW-L2, ...; not AutoAttack's worst case, which keeps the images
the deployed defense still classifies right, so ``cacheable`` leaves it out)
does not depend on the defense: the Table 8 and Table 9 rows of every
generator attack the same images. Crafting them is much of a row's cost
where the attack is slow (CW-L2 on 200 CIFAR-10 test images took about 80
of the frozen-teacher HGAN row's 160 minutes at one thread). An
``AdversarialCache`` keeps each chunk's adversarial images in
``FOLDER/<key>.pt`` under the sha256 of everything that decides them: the
classifier's parameters, buffers and mode, the dataset, the attack and its
ART settings, the seed, the images and their labels, and the ART and torch
versions. A cached chunk is what the
same seeded crafting call returned on the machine that made it; a fresh
craft on a machine whose kernels round differently may differ, as any rerun
there would (in the last bits, which an iterative attack such as CW can
carry to another image on a few images). A row that read its images from
the cache records how many (``cached_images``): its seconds are then the
scoring's alone. Files are checkpoints (``checkpoints``:
written atomically, read with ``weights_only=True``); one that does not
read, or does not fit its chunk, is refused with its path, never silently
recrafted or used.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import art
import torch
from torch import nn

from defense_hgan.checkpoints import load_checkpoint, save_checkpoint

KIND = "oblivious adversarial images"
JUDGED_BY_THE_DEFENSE = ("autoattack",)  # worst cases that keep only the images the deployed defense gets right


def cacheable(attack: str, threat: str) -> bool:
    """Whether ``attack``'s images under ``threat`` depend on the classifier, images and settings alone."""
    return threat == "oblivious" and attack not in JUDGED_BY_THE_DEFENSE


class AdversarialCache:
    """Oblivious adversarial images of chunks of test images, one file per chunk and attack."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def oblivious(self, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, craft: Callable[[], torch.Tensor],
                  *, dataset: str, attack: str, settings: dict, seed: int) -> tuple[torch.Tensor, bool]:
        """The images ``craft()`` makes (crafted against the bare ``classifier``), and whether they were read from
        the folder rather than crafted."""
        key = chunk_key(classifier, images, labels, dataset=dataset, attack=attack, settings=settings, seed=seed)
        path = self.folder / f"{key}.pt"
        if path.exists():
            return _read(path, key, images), True
        adversarial = craft()
        save_checkpoint(path, KIND, {"key": key, "device": str(images.device)}, {"adversarial": adversarial})
        return adversarial, False


def chunk_key(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, dataset: str, attack: str,
              settings: dict, seed: int) -> str:
    """sha256 of what decides an oblivious attack's images: classifier weights, data, attack, settings, seed."""
    described = {"dataset": dataset, "attack": attack, "settings": settings, "seed": seed,
                 "training_mode": classifier.training, "art": art.__version__, "torch": torch.__version__}
    hasher = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    for name, tensor in sorted(classifier.state_dict().items()):
        hasher.update(name.encode())
        _hash_tensor(hasher, tensor)
    _hash_tensor(hasher, images)
    _hash_tensor(hasher, labels)
    return hasher.hexdigest()


def _hash_tensor(hasher, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    hasher.update(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
    hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def _read(path: Path, key: str, images: torch.Tensor) -> torch.Tensor:
    fix = "delete it to craft that chunk again"
    try:
        payload = load_checkpoint(path, KIND)
    except ValueError as error:  # the checkpoint's message names the file
        raise ValueError(f"adversarial cache: {error}; {fix}") from None
    adversarial = payload.get("adversarial")
    if not isinstance(adversarial, torch.Tensor) or (payload.get("config") or {}).get("key") != key:
        raise ValueError(f"adversarial cache file {path} is not this chunk's cached images; {fix}")
    if adversarial.shape != images.shape or adversarial.dtype != images.dtype:
        raise ValueError(f"adversarial cache file {path} holds {adversarial.dtype} images of shape "
                         f"{tuple(adversarial.shape)}, the chunk is {images.dtype} {tuple(images.shape)}; {fix}")
    return adversarial.to(images.device)
