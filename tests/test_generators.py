import math

import pytest
import torch
from torch import nn

from defense_hgan.checkpoints import CheckpointError
from defense_hgan.classifier_io import save_classifier
from defense_hgan.generator_io import load_generator, save_generator
from defense_hgan.generators import GENERATOR_MODELS, build_generator, build_training
from defense_hgan.generators.hgan import TEACHER_LR, teacher_output
from defense_hgan.generators.pixelcnn import bits_per_dim
from defense_hgan.generators.wgan_gp import LeakyReLU, gradient_penalty

SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
TINY_TEACHER = {"nr_filters": 8, "nr_logistic_mix": 2}


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("model", GENERATOR_MODELS)
def test_every_generator_maps_latents_to_images_in_unit_range(model, dataset):
    torch.manual_seed(0)
    generator = build_generator(model, dataset)
    assert generator.image_shape == SHAPES[dataset]
    z = 10 * torch.randn(5, generator.latent_dim)  # far out in the tails too
    for mode in (generator.train(), generator.eval()):
        images = mode(z)
        assert images.shape == (5, *SHAPES[dataset]) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("model", ["dcgan", "wgan-gp"])
def test_discriminators_score_each_image_once(model, dataset):
    torch.manual_seed(0)
    discriminator = build_training(model, dataset).networks["discriminator"]
    assert discriminator(torch.rand(3, *SHAPES[dataset])).shape == (3,)


def test_latent_sizes_follow_the_papers():
    assert build_generator("dcgan", "mnist").latent_dim == 100
    assert build_generator("wgan-gp", "mnist").latent_dim == 128  # Defense-GAN
    assert build_generator("hgan", "mnist", latent_dim=32).latent_dim == 32


def test_weights_start_from_the_dcgan_normal():
    torch.manual_seed(0)
    weights = torch.cat([m.weight.flatten() for m in build_generator("dcgan", "cifar10").modules()
                         if isinstance(m, nn.ConvTranspose2d)])
    assert abs(weights.mean().item()) < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.05)


def test_unknown_names_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator model 'stylegan'; expected one of dcgan, wgan-gp"):
        build_generator("stylegan", "mnist")
    with pytest.raises(ValueError, match="does not take the options"):
        build_generator("dcgan", "mnist", depth=3)
    with pytest.raises(ValueError, match="apply to hgan and autogan only"):
        build_training("dcgan", "mnist", teacher_options={"nr_filters": 8})
    with pytest.raises(ValueError, match="apply to hgan and autogan only"):
        build_training("wgan-gp", "mnist", teacher_loss="l1")
    with pytest.raises(ValueError, match="unknown teacher loss 'l2'"):
        build_training("hgan", "mnist", teacher_options=TINY_TEACHER, teacher_loss="l2")


def test_gradient_penalty_vanishes_for_a_unit_slope_critic():
    w = torch.randn(1, 28, 28)
    w /= w.norm()
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731  gradient w everywhere, norm 1
    real, fake = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(lambda x: 3 * critic(x), real, fake).item() == pytest.approx(4.0)  # (3 - 1)^2


def _with_torch_leaky_relu(critic: nn.Module) -> nn.Module:
    """The critic as it was built before the masked LeakyReLU: nn.LeakyReLU(0.2, inplace) in the same places."""
    for index, layer in enumerate(critic.net):
        if isinstance(layer, LeakyReLU):
            critic.net[index] = nn.LeakyReLU(layer.negative_slope, True)
    return critic


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_leaky_relu_skips_the_zero_pass_of_the_double_backward(dtype):
    x, w = torch.randn(64, dtype=dtype), torch.randn(64, dtype=dtype)
    x[:3] = torch.tensor([0.0, -0.0, 1e-30])
    outputs = {}
    for name, layer in (("ours", LeakyReLU(0.2)), ("torch", nn.LeakyReLU(0.2))):
        inputs, weights = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        scores = layer(inputs * weights)  # a one-layer critic
        (grad,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
        grad.pow(2).sum().backward()  # a penalty on the input gradient, as WGAN-GP's
        outputs[name] = scores.detach(), grad.detach(), weights.grad, inputs.grad
    ours, theirs = outputs["ours"], outputs["torch"]
    assert all(torch.equal(a, b) for a, b in zip(ours[:3], theirs[:3]))  # values, gradient, penalty's gradient
    assert torch.equal(theirs[3], torch.zeros_like(x))  # nn.LeakyReLU backpropagates zeros into the forward pass
    assert ours[3] is None  # ours does not reach it at all


def test_wgan_gp_steps_match_nn_leaky_relu_bit_for_bit():
    def three_steps(swap: bool):
        torch.manual_seed(0)
        training = build_training("wgan-gp", "mnist")
        if swap:
            _with_torch_leaky_relu(training.networks["discriminator"])
        batches = torch.Generator().manual_seed(1)
        next_batch = lambda: torch.rand(4, 1, 28, 28, generator=batches)  # noqa: E731
        losses = [training.step(training.networks, training.optimizers, next_batch) for _ in range(3)]
        return losses, {name: net.state_dict() for name, net in training.networks.items()}

    (ours, our_weights), (theirs, their_weights) = three_steps(False), three_steps(True)
    assert all(torch.equal(a[key], b[key]) for a, b in zip(ours, theirs) for key in a)
    for name, state in our_weights.items():
        assert all(torch.equal(state[key], their_weights[name][key]) for key in state), name


def test_teacher_losses_are_the_likelihood_and_the_papers_l1():
    torch.manual_seed(0)
    teacher = build_training("hgan", "mnist", teacher_options=TINY_TEACHER).networks["teacher"]
    x = torch.randint(0, 256, (3, 1, 28, 28)) / 255
    x_xi, nll = teacher_output(teacher, x, "nll")
    assert not x_xi.requires_grad and torch.allclose(x_xi, teacher.predictive_mean(x))
    assert nll.item() == pytest.approx(bits_per_dim(teacher.nll(x), (1, 28, 28)).mean().item(), rel=1e-5)
    assert teacher_output(teacher, x, "l1")[1].item() == pytest.approx(teacher.l1_loss(x).item(), rel=1e-5)


class SpyDiscriminator(nn.Module):
    """Logit 0 for every image (so each BCE term is log 2), remembering what it was shown."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.bias + 0 * x.flatten(1).sum(1)


@pytest.mark.parametrize("model, reals", [("dcgan", ["x"]), ("hgan", ["x_xi", "x"]), ("autogan", ["x_xi"])])
def test_discriminator_sees_each_real_input_and_one_fake_term_per_real(model, reals):
    torch.manual_seed(0)
    training = build_training(model, "mnist", teacher_options=TINY_TEACHER if model != "dcgan" else None)
    spy = training.networks["discriminator"] = SpyDiscriminator()
    training.optimizers["discriminator"] = torch.optim.Adam(spy.parameters())
    x = torch.rand(4, 1, 28, 28)
    expected = {"x": x}
    if "teacher" in training.networks:
        expected["x_xi"] = teacher_output(training.networks["teacher"], x)[0]
        teacher_before = [p.clone() for p in training.networks["teacher"].parameters()]
    losses = training.step(training.networks, training.optimizers, lambda: x)
    *real_seen, fake_for_d, fake_for_g = spy.seen
    assert len(real_seen) == len(reals)
    for name, seen in zip(reals, real_seen):
        assert torch.allclose(seen, expected[name])
    assert torch.equal(fake_for_d, fake_for_g)  # G(z) computed once per step
    assert losses["d"].item() == pytest.approx(2 * len(reals) * math.log(2))
    assert losses["g"].item() == pytest.approx(len(reals) * math.log(2))
    if "teacher" in training.networks:  # trained alongside, by its own loss
        assert any(not torch.equal(a, b) for a, b in zip(teacher_before, training.networks["teacher"].parameters()))


@pytest.mark.parametrize("model", ["dcgan", "hgan"])
def test_real_label_smooths_only_ds_real_targets(model):
    """With target t, BCE(l, t) = softplus(l) - t l: 0.9 instead of 1 adds 0.1 mean(D(x)) per real input to D's loss."""
    x, teacher = torch.rand(4, 1, 28, 28), TINY_TEACHER if model == "hgan" else None
    losses, logits = {}, None
    for real_label in (1.0, 0.9):
        torch.manual_seed(0)
        training = build_training(model, "mnist", teacher_options=teacher, real_label=real_label)
        with torch.no_grad():
            reals = [x] if model == "dcgan" else [teacher_output(training.networks["teacher"], x)[0], x]
            logits = [training.networks["discriminator"](real).mean() for real in reals]
        torch.manual_seed(1)
        losses[real_label] = training.step(training.networks, training.optimizers, lambda: x)
    assert losses[0.9]["d"].item() - losses[1.0]["d"].item() == pytest.approx(0.1 * sum(logits).item(), abs=1e-5)


@pytest.mark.parametrize("model, real_label, message", [
    ("wgan-gp", 0.9, "applies to dcgan, hgan, autogan, whose D is DCGAN's, not wgan-gp"),
    ("s-argan", 0.9, "not s-argan"),
    ("dcgan", 0.4, r"real_label must be in \(0.5, 1\]"),
    ("dcgan", 1.1, r"real_label must be in \(0.5, 1\]"),
])
def test_real_label_is_refused_where_it_does_not_apply(model, real_label, message):
    with pytest.raises(ValueError, match=message):
        build_training(model, "mnist", real_label=real_label)


@pytest.mark.parametrize("model, own_lr", [("dcgan", 2e-4), ("wgan-gp", 1e-4), ("hgan", 2e-4)])
def test_d_lr_sets_only_d_s_learning_rate(model, own_lr):
    teacher = TINY_TEACHER if model == "hgan" else None
    rates = {d_lr: {name: optimizer.param_groups[0]["lr"] for name, optimizer in
                    build_training(model, "mnist", teacher_options=teacher, d_lr=d_lr).optimizers.items()}
             for d_lr in (None, 5e-5)}
    teacher_rate = {"teacher": TEACHER_LR} if model == "hgan" else {}  # the teacher keeps PixelCNN++'s own
    assert rates[None] == {"generator": own_lr, "discriminator": own_lr, **teacher_rate}
    assert rates[5e-5] == {"generator": own_lr, "discriminator": 5e-5, **teacher_rate}


def test_d_lr_reaches_the_frozen_teacher_step_s_d():
    frozen = build_training("hgan", "mnist", teacher_batches=lambda n: torch.rand(n, 1, 28, 28), d_lr=5e-5)
    assert frozen.optimizers["discriminator"].param_groups[0]["lr"] == 5e-5
    assert frozen.optimizers["generator"].param_groups[0]["lr"] == 2e-4


@pytest.mark.parametrize("d_lr", [0, -1e-4, 1.5, "fast"])
def test_d_lr_must_be_a_learning_rate(d_lr):
    with pytest.raises(ValueError, match=r"d_lr must be a learning rate in \(0, 1\)"):
        build_training("dcgan", "mnist", d_lr=d_lr)


def test_saved_generator_loads_in_eval_mode_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    generator = build_generator("wgan-gp", "cifar10", width=8).eval()
    save_generator(generator, tmp_path / "g.pt", "wgan-gp", "cifar10", {"width": 8})
    loaded = load_generator(tmp_path / "g.pt", device="cpu")
    z = torch.randn(2, 128)
    assert not loaded.training and loaded.latent_dim == 128 and loaded.image_shape == (3, 32, 32)
    assert torch.equal(loaded(z), generator(z))


def test_load_generator_rejects_other_files(tmp_path):
    save_classifier(nn.Linear(2, 2), tmp_path / "classifier.pt", {"dataset": "mnist", "arch": "a", "options": {}})
    with pytest.raises(CheckpointError, match="expected a 'generator' one"):
        load_generator(tmp_path / "classifier.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_generator(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")
