import pytest
import torch

from classifiers import ARCHITECTURES, build_classifier
from defense_hgan.data import DATASETS


@pytest.mark.parametrize("dataset,arch", [(d, a) for d, archs in ARCHITECTURES.items() for a in archs])
def test_every_classifier_maps_unit_range_nchw_to_logits(dataset, arch):
    torch.manual_seed(0)
    model = build_classifier(dataset, arch).eval()
    x = torch.rand(3, *DATASETS[dataset].image_shape)
    logits = model(x)
    assert logits.shape == (3, 10)
    assert torch.isfinite(logits).all()


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match=r"\['a', 'b', 'c', 'd'\]"):
        build_classifier("mnist", "resnet")


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="cifar10"):
        build_classifier("imagenet")


def test_whitening_stem_decorrelates_patches():
    torch.manual_seed(0)
    model = build_classifier("cifar10", "fast")
    images = torch.rand(64, 3, 32, 32) * 0.5 + torch.linspace(0, 0.5, 32)  # correlated pixels
    model.init_from_data(images)
    with torch.no_grad():
        features = model.whiten((images - model.mean) / model.std)[:, :12] - model.whiten.bias[:12, None, None]
    flat = features.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)


def test_cifar_net_in_eval_mode_is_mirror_invariant():
    torch.manual_seed(0)
    model = build_classifier("cifar10", "fast").eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x.flip(-1)))
