import copy
import math

import pytest
import torch
from torch import nn

from defense_hgan.gan_training import GanConfig, train_generator
from defense_hgan.generator_io import load_generator
from defense_hgan.generators import argan, build_generator, build_training

ARGAN_MODELS = ("s-argan", "c-argan", "pargan")
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@pytest.mark.parametrize("layers", [1, 2])  # S-ARGAN's and C-ARGAN's
def test_the_prediction_for_element_n_plus_1_sees_elements_up_to_n_only(layers):
    torch.manual_seed(0)
    model = argan.Autoregressor(size=3, hidden=5, layers=layers)
    sequences = torch.randn(2, 6, 3)
    predictions = model(sequences)
    assert predictions.shape == (2, 5, 3)  # [:, n] predicts element n + 1: elements 1..5
    for k in range(6):
        changed = sequences.clone()
        changed[:, k] += 1
        after = model(changed)
        assert torch.equal(after[:, :k], predictions[:, :k]), k  # predictions of elements 1..k
        if k < 5:  # element k is the input of the prediction of element k + 1, and of every later one
            assert not torch.allclose(after[:, k:], predictions[:, k:]), k
        # the last element is only ever a target: no prediction changes (k == 5, after[:, 5:] is empty)


def test_the_error_pairs_each_prediction_with_the_next_element():
    sequences = torch.randn(2, 6, 3)
    assert torch.equal(argan.prediction_error(sequences[:, 1:], sequences), torch.zeros(2))
    shifted = argan.prediction_error(sequences[:, :-1], sequences)  # predicting "same as the last one"
    assert torch.allclose(shifted, (sequences[:, 1:] - sequences[:, :-1]).abs().mean((1, 2)))


def test_factorisations_split_and_restore_exactly():
    features = torch.randn(2, 5, 3, 4)  # (N, C, H, W)
    spatial = argan.factorise(features, "spatial")
    assert spatial.shape == (2, 12, 5)  # H*W positions in raster order, each a C-vector
    for i in range(12):
        assert torch.equal(spatial[:, i], features[:, :, i // 4, i % 4])
    channel = argan.factorise(features, "channel")
    assert channel.shape == (2, 5, 12)  # C channels, each its H*W map
    for c in range(5):
        assert torch.equal(channel[:, c], features[:, c].flatten(1))
    for factorisation, sequences in (("spatial", spatial), ("channel", channel)):
        assert torch.equal(argan.restore(sequences, factorisation, (5, 3, 4)), features)
    with pytest.raises(ValueError, match="unknown factorisation 'diagonal'"):
        argan.factorise(features, "diagonal")


@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_generator_and_discriminators_fit_both_image_sizes(dataset):
    torch.manual_seed(0)
    shape = SHAPES[dataset]
    generator = argan.Generator(shape, width=8)
    z = 10 * torch.randn(3, 100)
    for mode in (generator.train(), generator.eval()):
        images = mode(z)
        assert images.shape == (3, *shape) and 0 <= images.min() and images.max() <= 1
    x = torch.rand(3, *shape)
    for factorisation, patch in (("spatial", False), ("channel", False), ("spatial", True)):
        critic = argan.Discriminator(shape, factorisation, patch, width=8, hidden=16)
        assert critic.encoder(x).shape[-2:] == (2, 2)
        error, scores = critic(x)
        assert error.shape == (3,) and (error > 0).all()
        assert scores.shape == (3, 4) if patch else scores is None


def test_networks_are_the_papers_at_the_default_width():
    generator = build_generator("s-argan", "cifar10")
    assert generator.latent_dim == 100 and generator.fc[0].out_features == 512 * 4 * 4
    shapes = {model: build_training(model, "cifar10").networks["discriminator"] for model in ARGAN_MODELS}
    for model, depth, hidden, layers in (("s-argan", 512, 512, 1), ("c-argan", 256, 128, 2), ("pargan", 512, 512, 1)):
        critic = shapes[model]
        assert critic.encoder(torch.rand(2, 3, 32, 32)).shape == (2, depth, 2, 2), model
        lstm = critic.autoregressor.lstm
        assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (depth if layers == 1 else 4, hidden, layers)
        assert (critic.patch is not None) == (model == "pargan")
        if critic.patch is not None:
            assert (critic.patch.in_channels, critic.patch.out_channels, critic.patch.kernel_size) == (512, 1, (1, 1))


@pytest.mark.parametrize("model, g_steps", [("s-argan", 3), ("c-argan", 3), ("pargan", 3)])
def test_one_step_is_one_e_r_update_and_t_generator_updates(model, g_steps):
    torch.manual_seed(0)
    training = build_training(model, "mnist")
    steps = {"generator": 0, "discriminator": 0}
    for name, optimizer in training.optimizers.items():
        group = optimizer.param_groups[0]
        assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.999)
        assert {id(p) for p in group["params"]} == {id(p) for p in training.networks[name].parameters()}
        optimizer.register_step_post_hook(lambda *_, name=name: steps.__setitem__(name, steps[name] + 1))
    losses = training.step(training.networks, training.optimizers, lambda: torch.rand(2, 1, 28, 28))
    assert steps == {"generator": g_steps, "discriminator": 1}
    assert set(losses) == {"e", "r", "g"} and all(math.isfinite(v.item()) for v in losses.values())


def _expected_gradients(generator, critic, real, z):
    """Algorithm 1's gradients, each player's of its own loss, all at the same parameters."""
    real_error, real_patch = critic(real)
    fake_error, fake_patch = critic(generator(z))
    g_loss, e_loss, r_loss = fake_error.mean(), real_error.mean() - fake_error.mean(), real_error.mean()
    players = [(g_loss, generator), (e_loss, critic.encoder), (r_loss, critic.autoregressor)]
    if critic.patch is not None:  # least squares, Eq. 9-10
        d_loss = ((real_patch - 1) ** 2).mean() / 2 + (fake_patch ** 2).mean() / 2
        players = [(g_loss + ((fake_patch - 1) ** 2).mean() / 2, generator), (e_loss + d_loss, critic.encoder),
                   (r_loss, critic.autoregressor), (d_loss, critic.patch)]
    return [g for loss, net in players for g in torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)]


@pytest.mark.parametrize("factorisation, patch", [("spatial", False), ("channel", False), ("spatial", True)])
def test_each_player_descends_its_own_loss_simultaneously(factorisation, patch):
    """With plain SGD, one step moves G by -lr dL_G, E by -lr d(L_R - L_G (+ L_d)), R by -lr dL_R (R: real only)."""
    torch.manual_seed(0)
    generator = argan.Generator((1, 28, 28), width=4)
    critic = argan.Discriminator((1, 28, 28), factorisation, patch, width=4, hidden=8)
    before_g, before_d = copy.deepcopy(generator), copy.deepcopy(critic)
    real, lr = torch.rand(4, 1, 28, 28), 0.1
    optimizers = {"generator": torch.optim.SGD(generator.parameters(), lr),
                  "discriminator": torch.optim.SGD(critic.parameters(), lr)}
    torch.manual_seed(1)
    argan.train_step({"generator": generator, "discriminator": critic}, optimizers, lambda: real, generator_steps=1)
    torch.manual_seed(1)
    z = torch.randn(4, 100)
    expected = _expected_gradients(before_g, before_d, real, z)
    order = [generator, critic.encoder, critic.autoregressor] + ([critic.patch] if patch else [])
    old = [before_g, before_d.encoder, before_d.autoregressor] + ([before_d.patch] if patch else [])
    params = [(p, q) for new, was in zip(order, old) for p, q in zip(new.parameters(), was.parameters())]
    assert len(params) == len(expected) == len(list(generator.parameters())) + len(list(critic.parameters()))
    for (new, was), grad in zip(params, expected):
        assert torch.allclose(new, was - lr * grad, atol=1e-6)


def _config(model, root, out, **overrides) -> GanConfig:
    config = dict(model=model, dataset="mnist", steps=2, batch_size=4, out=str(out), data_root=str(root),
                  device="cpu", progress=False)
    return GanConfig(**{**config, **overrides})


def test_a_cifar_run_trains_and_its_generator_loads(cifar_root, tmp_path):
    """MNIST runs of every model are in test_gan_training; the discriminators' CIFAR shapes are checked above."""
    torch.manual_seed(0)
    metrics = train_generator(_config("c-argan", cifar_root, tmp_path / "run", dataset="cifar10",
                                      generator_options={"width": 8}))
    assert all(math.isfinite(value) for value in metrics["final_losses"].values())
    generator = load_generator(tmp_path / "run" / "generator.pt", device="cpu")
    assert generator.image_shape == (3, 32, 32) and generator.width == 8
    images = generator(torch.randn(2, 100))
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1


def test_resume_continues_an_argan_run_as_if_never_stopped(mnist_root, tmp_path):
    """The t generator updates draw their own z: the RNG state in the checkpoint must carry them."""
    small = {"generator_options": {"width": 8}}
    whole = train_generator(_config("c-argan", mnist_root, tmp_path / "whole", **small))
    train_generator(_config("c-argan", mnist_root, tmp_path / "split", steps=1, **small))
    resumed = train_generator(_config("c-argan", mnist_root, tmp_path / "split", resume=True, **small))
    assert resumed["final_losses"] == whole["final_losses"]
    a, b = load_generator(tmp_path / "whole" / "generator.pt"), load_generator(tmp_path / "split" / "generator.pt")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_registered_models_build_the_argan_networks():
    for model in ARGAN_MODELS:
        assert isinstance(build_generator(model, "mnist", width=8), argan.Generator)
    assert isinstance(build_training("pargan", "mnist").networks["discriminator"].patch, nn.Conv2d)
