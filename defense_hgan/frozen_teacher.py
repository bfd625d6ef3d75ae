"""HGAN with a pretrained, frozen teacher: an option beside Algorithm 1 that makes an HGAN step cost a DCGAN step.

Algorithm 1 trains the PixelCNN++ teacher beside G and D, and the teacher is
most of an HGAN step: on this project's CPU its forward pass alone takes more
than half the step and its backward pass about a third more
(``benchmarks/generator_step.py``). The teacher learns only from its own loss
on the data (x_xi is detached for D and G), so the teacher of an HGAN run at
step S is a PixelCNN++ trained alone for S steps. Frozen, its mean image of a
training image never changes, so those images are computed once, for the
first ``count`` training images, and D's teacher term draws its batches from
them with the run's data RNG.

The departure from Algorithm 1, stated wherever results use it: D sees a
finished teacher's images from the first step on, instead of a teacher that
learns beside it, and those images come from a fixed subset of the training set.

OUT holds, beside the usual run files:
    teacher.pt         the frozen teacher, copied from the source run when OUT's run starts
    teacher_images.pt  its mean images, recomputed only when missing or made by another teacher
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from defense_hgan.atomic import atomic_write
from defense_hgan.checkpoints import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from defense_hgan.data import dataset_info
from defense_hgan.generators import TEACHER_MODELS
from defense_hgan.generators.pixelcnn import PixelCNNPP, mixture_mean

TEACHER_FILE = "teacher.pt"
IMAGES_FILE = "teacher_images.pt"
TEACHER_KIND = "frozen-teacher"
IMAGES_KIND = "teacher-images"
SOURCE_KIND = "generator-training"  # gan_training.STATE_KIND, the file a source run writes
BATCH = 100


def prepare(source: str | Path | None, out: Path, dataset: str, images: torch.Tensor, count: int, resume: bool,
            progress: bool = False) -> None:
    """Make OUT's frozen teacher (on a fresh run, the teacher of the HGAN/AutoGAN training state ``source``, or
    ``source`` itself when it is another frozen run's teacher.pt) and
    its mean images of the first ``count`` of ``images`` (the training set).

    A resumed run reads its own copy of the teacher, so the source run may train on, or be gone, meanwhile.
    """
    if not 1 <= count <= len(images):
        raise ValueError(f"teacher_images must be between 1 and the {len(images)} training images, got {count!r}")
    path = out / TEACHER_FILE
    if not resume:
        _copy_teacher(Path(source), path, dataset)
    elif not path.is_file():
        raise CheckpointError(f"--resume: {out} holds no {TEACHER_FILE} to read the frozen teacher from; "
                              f"was its run started without --teacher-from?")
    identity = _images_identity(out, count)
    if (out / IMAGES_FILE).is_file() and load_checkpoint(out / IMAGES_FILE, IMAGES_KIND)["config"] == identity:
        return
    saved = load_checkpoint(path, TEACHER_KIND)
    teacher = PixelCNNPP(tuple(saved["config"]["image_shape"]), **saved["config"]["teacher_options"])
    teacher.load_state_dict(saved["state_dict"])
    means = teacher_images(teacher.to(images.device).eval(), images[:count], progress)
    save_checkpoint(out / IMAGES_FILE, IMAGES_KIND, identity, {"images": means})


def _copy_teacher(source: Path, path: Path, dataset: str) -> None:
    """Copy the teacher of an HGAN/AutoGAN training state, or another frozen run's teacher.pt, to ``path``."""
    state = load_checkpoint(source, (SOURCE_KIND, TEACHER_KIND))
    config = state["config"]
    frozen = state["kind"] == TEACHER_KIND  # another frozen run's teacher: copied as it is, so the same teacher_sha256
    if not frozen and config.get("model") not in TEACHER_MODELS:
        raise ValueError(f"--teacher-from {source} is a {config.get('model')} run, which has no teacher; "
                         f"expected the training_state.pt of an {' or '.join(TEACHER_MODELS)} run, or a frozen run's "
                         f"{TEACHER_FILE}")
    # a teacher.pt written before it recorded its dataset is checked by its image shape alone, below
    trained_on = config.get("dataset", dataset) if frozen else config.get("dataset")
    if trained_on != dataset:
        raise ValueError(f"--teacher-from {source} was trained on {trained_on}, not {dataset}")
    shape = dataset_info(dataset).image_shape
    if frozen:
        if tuple(config["image_shape"]) != shape:
            raise ValueError(f"--teacher-from {source} is a teacher of {config['image_shape']} images, "
                             f"not of {dataset}'s {list(shape)}")
        with atomic_write(path, "wb") as f:
            f.write(source.read_bytes())
        return
    options = dict(config.get("teacher_options") or {})
    weights = state["networks"]["teacher"]
    PixelCNNPP(shape, **options).load_state_dict(weights)  # a mismatch fails here
    save_checkpoint(path, TEACHER_KIND, {
        "dataset": dataset,
        "image_shape": list(shape),
        "teacher_options": options,
        "source": str(source),
        "source_sha256": file_sha256(source),
        "source_step": state["step"],
    }, {"state_dict": weights})


def _images_identity(out: Path, count: int) -> dict:
    return {"teacher_sha256": file_sha256(out / TEACHER_FILE), "count": count}


@torch.no_grad()
def teacher_images(teacher: PixelCNNPP, images: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """The teacher-forced mean image of each of ``images`` (N, C, H, W) in [0, 1], in batches of BATCH."""
    return torch.cat([mixture_mean(teacher(images[i:i + BATCH]), images[i:i + BATCH])
                      for i in tqdm(range(0, len(images), BATCH), desc="teacher images", disable=not progress)])


def teacher_batches(out: Path, count: int, data_order: torch.Generator,
                    device: torch.device | str) -> Callable[[int], torch.Tensor]:
    """``draw(n)``: n of the frozen teacher's mean images that ``prepare`` kept in OUT, drawn with ``data_order``."""
    saved = load_checkpoint(out / IMAGES_FILE, IMAGES_KIND)
    if saved["config"] != _images_identity(out, count):
        raise CheckpointError(f"{out / IMAGES_FILE} was made by another teacher or count than the run's; "
                              f"delete it and it is made again")
    means = saved["images"].to(device)

    def draw(n: int) -> torch.Tensor:
        return means[torch.randint(len(means), (n,), generator=data_order).to(device)]

    return draw
