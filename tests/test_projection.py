import numpy as np
import pytest
import torch
from torch import nn

from defense_hgan.projection import project


class TinyGenerator(nn.Module):
    """8-d latent -> 1x8x8 image in [0, 1]: a linear layer and one transposed conv, like the real ones."""

    latent_dim = 8
    image_shape = (1, 8, 8)

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(8, 4 * 4 * 4)
        self.up = nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)

    def forward(self, z):
        return torch.sigmoid(self.up(torch.relu(self.fc(z)).view(-1, 4, 4, 4)))  # (N, 1, 8, 8)


@pytest.fixture
def generator():
    return TinyGenerator()


def generated(generator, n=6, seed=1):
    """Images the generator itself makes, and their latents."""
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator(z), z


def noise(n=16, seed=2):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_result_shapes_and_range(generator):
    x = noise(5)
    result = project(generator, x, L=3, R=2, seed=0)
    assert result.images.shape == (5, 1, 8, 8) and result.images.dtype == x.dtype
    assert result.z.shape == (5, 8) and result.error.shape == (5,)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert result.steps == 3


def test_error_is_the_mse_of_the_returned_images(generator):
    x = noise(5)
    result = project(generator, x, L=5, R=2, seed=0)
    with torch.no_grad():
        assert torch.allclose(generator(result.z), result.images)
    assert torch.allclose(result.error, (result.images - x).square().mean((1, 2, 3)))


def test_same_seed_same_output_and_another_seed_another(generator):
    x = noise(4)
    first, again = project(generator, x, L=10, R=3, seed=7), project(generator, x, L=10, R=3, seed=7)
    assert torch.equal(first.images, again.images) and torch.equal(first.z, again.z)
    assert not torch.equal(first.z, project(generator, x, L=10, R=3, seed=8).z)


def test_best_restart_is_selected(generator):
    x = noise(6)
    z0 = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(3)) / 8 ** 0.5
    result = project(generator, x, L=15, R=4, z0=z0)
    # Each restart's descent is independent of the others, so each can be rerun alone.
    alone = [project(generator, x, L=15, R=1, z0=z0[:, k : k + 1]) for k in range(4)]
    errors = torch.stack([a.error for a in alone], 1)  # (N, R)
    best = errors.argmin(1)
    assert len(set(best.tolist())) > 1, "the test needs images whose best restart differs"
    assert torch.allclose(result.error, errors.min(1).values, atol=1e-6)
    assert torch.allclose(result.z, torch.stack([alone[k].z[i] for i, k in enumerate(best.tolist())]), atol=1e-5)


def test_a_start_at_the_answer_wins(generator):
    x, z_true = generated(generator, n=3)
    z0 = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(4))
    z0[:, 2] = z_true
    result = project(generator, x, L=1, R=5, z0=z0, lr=1e-6)
    assert torch.allclose(result.z, z_true, atol=1e-4)
    assert result.error.max() < 1e-9


def test_generator_parameters_untouched_and_without_grad(generator):
    generator.train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    project(generator, noise(3), L=5, R=2, seed=0, optimizer="adam")
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in generator.parameters())
    assert generator.training, "the generator's mode is restored"


def test_projecting_generated_images_recovers_them(generator):
    x, _ = generated(generator, n=8)
    own = project(generator, x, L=200, R=10, seed=0).error.mean()
    foreign = project(generator, noise(8), L=200, R=10, seed=0).error.mean()
    assert own < 1e-4 and own < foreign / 100


def test_error_falls_as_L_grows(generator):
    x = noise(32)
    errors = [project(generator, x, L=L, R=2, seed=0).error.mean().item() for L in (1, 5, 25, 100)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


def test_error_falls_as_R_grows(generator):
    x = noise(32)
    errors = [project(generator, x, L=20, R=R, seed=0).error.mean().item() for R in (1, 4, 16)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


def test_chunking_does_not_change_the_result(generator):
    x = noise(7)
    whole = project(generator, x, L=10, R=3, seed=0)
    chunked = project(generator, x, L=10, R=3, seed=0, max_batch=6)  # 2 images per chunk
    assert torch.allclose(whole.images, chunked.images, atol=1e-6)


@pytest.mark.parametrize("options", [
    {"optimizer": "adam"}, {"schedule": "cosine"}, {"schedule": "constant"},
    {"optimizer": "adam", "schedule": "cosine", "lr": 0.1},
])
def test_every_optimiser_and_schedule_descends(generator, options):
    x = noise(8)
    start = project(generator, x, L=1, R=2, seed=0, **options).error.mean()
    assert project(generator, x, L=60, R=2, seed=0, **options).error.mean() < start


def test_early_stop_ends_once_the_error_stops_falling(generator):
    x, _ = generated(generator, n=4)
    result = project(generator, x, L=500, R=2, seed=0, optimizer="adam", early_stop=0.05)
    assert result.steps < 500 and result.steps % 10 == 0


def test_early_stop_never_fires_at_the_first_check(generator):
    x = noise(4)  # far from the generator's range: the error keeps falling for a while
    assert project(generator, x, L=40, R=2, seed=0, optimizer="adam", early_stop=1e-3).steps > 10


def test_bf16_and_channels_last_stay_close_to_fp32(generator):
    x = noise(4)
    fp32 = project(generator, x, L=20, R=2, seed=0)
    bf16 = project(generator, x, L=20, R=2, seed=0, bf16=True)
    channels_last = project(generator, x, L=20, R=2, seed=0, channels_last=True)
    assert bf16.images.dtype == torch.float32
    assert torch.allclose(bf16.error, fp32.error, rtol=0.1)
    assert torch.allclose(channels_last.images, fp32.images, atol=1e-5)
    assert generator.up.weight.is_contiguous(), "the weights' memory format is restored"


def test_works_under_inference_mode(generator):
    x = noise(2)
    with torch.inference_mode():
        result = project(generator, x, L=3, R=2, seed=0)
    assert torch.equal(result.images, project(generator, x, L=3, R=2, seed=0).images)


@pytest.mark.parametrize("x, error, words", [
    (np.zeros((2, 1, 8, 8), np.float32), TypeError, "torch.Tensor"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), TypeError, "floating point"),
    (torch.zeros(1, 8, 8), ValueError, "4-D"),
    (torch.zeros(2, 3, 8, 8), ValueError, "3 channels, the generator makes 1"),
    (torch.zeros(2, 8, 8, 1), ValueError, "permute"),
    (torch.zeros(2, 1, 28, 28), ValueError, "28x28, the generator makes 8x8"),
    (torch.full((2, 1, 8, 8), 255.0), ValueError, r"\[0, 1\], got values in \[255, 255\]; divide 0-255"),
    (torch.full((2, 1, 8, 8), -0.5), ValueError, r"\[0, 1\], got values in \[-0.5, -0.5\]$"),
    (torch.full((2, 1, 8, 8), float("nan")), ValueError, r"hold 128 NaN or infinite values; expected \(N, 1, 8, 8\)"),
    (torch.full((2, 1, 8, 8), float("inf")), ValueError, "hold 128 NaN or infinite"),
    (torch.zeros(0, 1, 8, 8), ValueError, "empty"),
])
def test_bad_images_are_refused_with_what_was_expected(generator, x, error, words):
    with pytest.raises(error, match=words):
        project(generator, x, L=1, R=1)


@pytest.mark.parametrize("options, words", [
    ({"L": 0}, "L must be a positive integer"),
    ({"R": 2.5}, "R must be a positive integer"),
    ({"optimizer": "lbfgs"}, "adam"),
    ({"schedule": "linear"}, "cosine"),
    ({"lr": -1.0}, "lr must be a positive finite number, got -1.0"),
    ({"lr": float("inf")}, "lr must be a positive finite number, got inf"),
    ({"early_stop": -0.1}, "tolerance"),
    ({"prior_weight": -1.0}, "prior_weight must be a finite number >= 0"),
    ({"prior_weight": float("nan")}, "prior_weight must be a finite number >= 0"),
    ({"tolerance": -0.1}, "tolerance must be a finite number >= 0"),
    ({"prune": 0}, r"prune must be None \(off\) or a fraction of L in \(0, 1\).*got 0$"),
    ({"prune": 1.0}, r"fraction of L in \(0, 1\).*got 1.0$"),
    ({"prune": -0.1}, r"fraction of L in \(0, 1\).*got -0.1$"),
    ({"prune": float("nan")}, r"fraction of L in \(0, 1\).*got nan$"),
    ({"prune": True}, r"fraction of L in \(0, 1\).*got True$"),
    ({"prune": "0.05"}, r"fraction of L in \(0, 1\).*got '0.05'$"),
    ({"z0": torch.zeros(2, 3, 8)}, r"\(2, 1, 8\)"),
    ({"z0": torch.full((2, 1, 8), float("nan"))}, "z0 must be finite, got 16 NaN or infinite values of 16"),
])
def test_bad_options_are_refused(generator, options, words):
    options = {"L": 1, "R": 1, **options}
    with pytest.raises(ValueError, match=words):
        project(generator, noise(2), **options)


def test_a_prior_weight_keeps_latents_nearer_the_prior_at_some_cost_in_error(generator):
    plain = project(generator, noise(8), L=40, R=2, seed=0)
    held = project(generator, noise(8), L=40, R=2, seed=0, prior_weight=1.0)
    assert held.z.norm(dim=1).mean() < plain.z.norm(dim=1).mean()
    assert held.error.mean() >= plain.error.mean()
    assert torch.equal(project(generator, noise(8), L=40, R=2, seed=0, prior_weight=0.0).z, plain.z)


def test_a_tolerance_lets_an_image_within_it_fit_as_well_as_its_source(generator):
    images, z = generated(generator)
    shift = torch.full_like(images, 0.1) * torch.where(images < 0.5, 1.0, -1.0)  # each pixel moved 0.1, inside [0, 1]
    z0 = z[:, None].repeat(1, 2, 1)  # every restart starts at the source image's latent
    tolerant = project(generator, images + shift, L=20, R=2, z0=z0, tolerance=0.1)
    plain = project(generator, images + shift, L=20, R=2, z0=z0)
    assert torch.allclose(tolerant.z, z)  # no pixel differs by more than 0.1: a zero loss, so no step moves z
    assert not torch.allclose(plain.z, z, atol=1e-3)  # the plain MSE pulls the latent toward the shift
    assert torch.allclose(tolerant.error, (tolerant.images - images - shift).square().mean((1, 2, 3)))  # plain MSE
    assert torch.equal(project(generator, noise(8), L=20, R=2, seed=0, tolerance=0.0).z,
                       project(generator, noise(8), L=20, R=2, seed=0).z)


def starts(n, r, seed=3):
    return torch.randn(n, r, 8, generator=torch.Generator().manual_seed(seed)) / 8 ** 0.5


class CountingGenerator(TinyGenerator):
    """TinyGenerator that counts the latents it is called with."""

    latents = 0

    def forward(self, z):
        self.latents += len(z)
        return super().forward(z)


def test_pruning_is_off_by_default_and_a_first_rung_at_L_prunes_nothing(generator):
    x = noise(5)
    full = project(generator, x, L=20, R=4, seed=0)
    for prune in (None, 0.99):  # 0.99: the first rung would follow step ceil(19.8) = 20 = L, so there is none
        same = project(generator, x, L=20, R=4, seed=0, prune=prune)
        assert torch.equal(same.images, full.images) and torch.equal(same.z, full.z)


def test_pruning_keeps_a_start_at_the_answer(generator):
    x, z_true = generated(generator, n=4)
    z0 = starts(4, 8)
    z0[torch.arange(4), torch.tensor([0, 3, 5, 7])] = z_true  # the answer sits at a different restart per image
    result = project(generator, x, L=40, R=8, z0=z0, prune=0.05)  # halvings at steps 2, 4 and 8
    assert torch.allclose(result.z, z_true, atol=1e-5)
    assert result.error.max() < 1e-9


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adam"])
def test_a_pruned_run_returns_a_survivor_of_the_full_run_unchanged(generator, optimizer):
    x, z0 = noise(8), starts(8, 6)
    full = project(generator, x, L=40, R=6, z0=z0, optimizer=optimizer)
    pruned = project(generator, x, L=40, R=6, z0=z0, optimizer=optimizer, prune=0.1)
    alone = torch.stack([project(generator, x, L=40, R=1, z0=z0[:, k : k + 1], optimizer=optimizer).z
                         for k in range(6)], 1)  # (N, R, d): each restart's full-length descent
    gap = (alone - pruned.z[:, None]).abs().amax(2).amin(1)  # distance to the nearest full-run restart
    assert gap.max() < 1e-6, "a survivor's momentum / Adam moments travel with it"
    assert (pruned.error >= full.error - 1e-7).all(), "pruning can lose the best restart, never beat it"


def test_pruning_runs_fewer_latents_through_the_generator():
    x, counted = noise(3), {}
    for prune in (None, 0.05):
        generator = CountingGenerator()
        project(generator, x, L=40, R=8, seed=0, prune=prune)
        counted[prune] = generator.latents
    # Halvings 8 -> 4 -> 2 -> 1 after steps 2, 4 and 8; then one final scoring pass per restart left.
    assert counted[None] == 3 * (8 * 40 + 8)
    assert counted[0.05] == 3 * (8 * 2 + 4 * 2 + 2 * 4 + 1 * 32 + 1)


def test_pruning_is_deterministic_and_unchanged_by_chunking(generator):
    x = noise(7)
    first = project(generator, x, L=30, R=6, seed=0, prune=0.1)
    again = project(generator, x, L=30, R=6, seed=0, prune=0.1)
    chunked = project(generator, x, L=30, R=6, seed=0, prune=0.1, max_batch=12)  # 2 images per chunk
    assert torch.equal(first.images, again.images) and torch.equal(first.z, again.z)
    assert torch.allclose(first.z, chunked.z, atol=1e-6) and torch.allclose(first.images, chunked.images, atol=1e-6)
