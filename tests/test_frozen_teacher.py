"""HGAN with a pretrained, frozen teacher (--teacher-from): the teacher is copied once, its images made once."""
import pytest
import torch

from defense_hgan import frozen_teacher
from defense_hgan.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from defense_hgan.data import load_dataset
from defense_hgan.gan_training import train_generator
from defense_hgan.generators.pixelcnn import PixelCNNPP, mixture_mean
from tests.test_gan_training import TINY_TEACHER, _saved_networks, tiny


@pytest.fixture
def source(mnist_root, tmp_path):
    """An HGAN run of 2 steps whose teacher the frozen runs take."""
    train_generator(tiny("hgan", mnist_root, tmp_path / "source"))
    return tmp_path / "source" / "training_state.pt"


def frozen(root, out, source, **overrides):
    return tiny("hgan", root, out, teacher_options={}, teacher_from=str(source), teacher_images=16, **overrides)


def test_the_frozen_teacher_is_the_source_runs_and_its_images_are_its_mean_images(mnist_root, source, tmp_path):
    train_generator(frozen(mnist_root, tmp_path / "run", source))
    teacher = PixelCNNPP((1, 28, 28), **TINY_TEACHER)
    teacher.load_state_dict(_saved_networks(source.parent)["teacher"])
    kept = load_checkpoint(tmp_path / "run" / "teacher.pt", frozen_teacher.TEACHER_KIND)
    assert all(torch.equal(kept["state_dict"][k], v) for k, v in teacher.state_dict().items())
    assert kept["config"]["source_step"] == 2 and kept["config"]["dataset"] == "mnist"
    images = load_dataset("mnist", train=True, root=str(mnist_root))[0][:16]
    with torch.no_grad():
        expected = mixture_mean(teacher.eval()(images), images)
    made = load_checkpoint(tmp_path / "run" / "teacher_images.pt", frozen_teacher.IMAGES_KIND)["images"]
    assert made.shape == (16, 1, 28, 28) and torch.allclose(made, expected, atol=1e-6)
    assert "teacher" not in _saved_networks(tmp_path / "run")  # nothing of the teacher trains, so none is saved


def test_another_frozen_runs_teacher_is_taken_as_it_is_and_trains_the_same(mnist_root, source, tmp_path):
    first = train_generator(frozen(mnist_root, tmp_path / "first", source))
    second = train_generator(frozen(mnist_root, tmp_path / "second", tmp_path / "first" / "teacher.pt"))
    assert (tmp_path / "second" / "teacher.pt").read_bytes() == (tmp_path / "first" / "teacher.pt").read_bytes()
    assert second["final_losses"] == first["final_losses"]


def test_a_frozen_teacher_of_other_images_is_refused(mnist_root, tmp_path):
    other = save_checkpoint(tmp_path / "teacher.pt", frozen_teacher.TEACHER_KIND,
                            {"image_shape": [3, 32, 32], "teacher_options": {}}, {"state_dict": {}})
    with pytest.raises(ValueError, match=r"is a teacher of \[3, 32, 32\] images, not of mnist's \[1, 28, 28\]"):
        train_generator(frozen(mnist_root, tmp_path / "run", other))


def test_a_frozen_teacher_of_another_dataset_of_the_same_shape_is_refused(mnist_root, tmp_path):
    fashion = save_checkpoint(tmp_path / "teacher.pt", frozen_teacher.TEACHER_KIND,
                              {"dataset": "fashion-mnist", "image_shape": [1, 28, 28], "teacher_options": {}},
                              {"state_dict": {}})
    with pytest.raises(ValueError, match="was trained on fashion-mnist, not mnist"):
        train_generator(frozen(mnist_root, tmp_path / "run", fashion))


def test_a_resumed_frozen_teacher_run_continues_bit_for_bit_from_its_own_copy(mnist_root, source, tmp_path):
    whole = train_generator(frozen(mnist_root, tmp_path / "whole", source, steps=4))
    train_generator(frozen(mnist_root, tmp_path / "split", source, steps=2))
    source.unlink()  # the source run may be gone: a resumed run reads its own teacher.pt
    resumed = train_generator(frozen(mnist_root, tmp_path / "split", source, steps=4, resume=True))
    assert resumed["final_losses"] == whole["final_losses"]
    for name, state in _saved_networks(tmp_path / "whole").items():
        assert all(torch.equal(value, _saved_networks(tmp_path / "split")[name][key]) for key, value in state.items())


def test_images_of_another_count_are_made_again_and_stale_ones_are_refused(mnist_root, source, tmp_path):
    train_generator(frozen(mnist_root, tmp_path / "run", source))
    images = load_dataset("mnist", train=True, root=str(mnist_root))[0]
    frozen_teacher.prepare(None, tmp_path / "run", "mnist", images, 8, resume=True)
    assert load_checkpoint(tmp_path / "run" / "teacher_images.pt", frozen_teacher.IMAGES_KIND)["images"].shape[0] == 8
    with pytest.raises(CheckpointError, match="another teacher or count"):
        frozen_teacher.teacher_batches(tmp_path / "run", 16, torch.Generator(), "cpu")


@pytest.mark.parametrize("overrides, message", [
    ({"model": "dcgan"}, "hgan and autogan only"),
    ({"teacher_options": TINY_TEACHER}, "drop the teacher options"),
    ({"teacher_images": 0}, "between 1 and the 64 training images"),
])
def test_bad_frozen_teacher_settings_are_refused(overrides, message, mnist_root, source, tmp_path):
    config = frozen(mnist_root, tmp_path / "run", source)
    for key, value in overrides.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=message):
        train_generator(config)


def test_a_source_without_a_teacher_is_refused(mnist_root, tmp_path):
    train_generator(tiny("dcgan", mnist_root, tmp_path / "dcgan"))
    with pytest.raises(ValueError, match="is a dcgan run, which has no teacher"):
        train_generator(frozen(mnist_root, tmp_path / "run", tmp_path / "dcgan" / "training_state.pt"))


def test_resuming_with_another_source_is_refused(mnist_root, source, tmp_path):
    train_generator(frozen(mnist_root, tmp_path / "run", source))
    with pytest.raises(ValueError, match="teacher_from"):
        train_generator(frozen(mnist_root, tmp_path / "run", tmp_path / "elsewhere.pt", steps=4, resume=True))
