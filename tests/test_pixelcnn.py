import math

import pytest
import torch

from defense_hgan.generators.pixelcnn import (
    PixelCNNPP,
    bits_per_dim,
    discretized_logistic_mixture_nll,
    mixture_mean,
)

# One pixel, K = 2 components, written out per the module's layout:
# [logits (K) | means (C, K) | log-scales (C, K) | raw coefficients (C(C-1)/2, K), pairs (1,0), (2,0), (2,1)]
LOGITS = [0.3, -0.5]
MEANS = [[-0.3, 0.4], [0.1, -0.6], [0.5, 0.0]]
LOG_SCALES = [[-1.5, -1.0], [-2.0, -1.2], [-1.1, -1.7]]
RAW_COEFFS = [[0.4, -0.8], [1.2, 0.2], [-0.5, 0.7]]


def pack(channels: int, logits=LOGITS, means=MEANS, log_scales=LOG_SCALES, raw_coeffs=RAW_COEFFS) -> torch.Tensor:
    """params (1, P, 1, 1) in float64 for a 1x1 image with the hand-written values above."""
    pairs = channels * (channels - 1) // 2
    values = [logits, *means[:channels], *log_scales[:channels], *raw_coeffs[:pairs]]
    return torch.tensor([v for group in values for v in group], dtype=torch.float64).view(1, -1, 1, 1)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def logistic_bin(level: int, mean: float, log_scale: float) -> float:
    """P(level) for a logistic on [-1, 1] cut into 256 bins, the outer two open to -inf / +inf."""
    y, s = 2 * level / 255 - 1, math.exp(log_scale)
    upper = 1.0 if level == 255 else sigmoid((y + 1 / 255 - mean) / s)
    lower = 0.0 if level == 0 else sigmoid((y - 1 / 255 - mean) / s)
    return upper - lower


def mixture_weights() -> list[float]:
    total = sum(math.exp(l) for l in LOGITS)
    return [math.exp(l) / total for l in LOGITS]


def pixel(*levels: int) -> torch.Tensor:
    return torch.tensor(levels, dtype=torch.float64).view(1, -1, 1, 1) / 255


@pytest.mark.parametrize("level", [0, 1, 77, 128, 254, 255])
def test_grayscale_likelihood_matches_direct_mixture_of_logistic_bins(level):
    direct = sum(w * logistic_bin(level, MEANS[0][k], LOG_SCALES[0][k]) for k, w in enumerate(mixture_weights()))
    nll = discretized_logistic_mixture_nll(pixel(level), pack(1))
    assert nll.shape == (1,)
    assert math.exp(-nll.item()) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 255, 255), (30, 200, 128), (255, 0, 91), (140, 141, 255)])
def test_rgb_likelihood_couples_green_to_red_and_blue_to_red_and_green(rgb):
    r, g, b = rgb
    yr, yg = 2 * r / 255 - 1, 2 * g / 255 - 1
    direct = 0.0
    for k, w in enumerate(mixture_weights()):
        alpha, beta, gamma = (math.tanh(RAW_COEFFS[pair][k]) for pair in range(3))
        direct += (
            w
            * logistic_bin(r, MEANS[0][k], LOG_SCALES[0][k])
            * logistic_bin(g, MEANS[1][k] + alpha * yr, LOG_SCALES[1][k])
            * logistic_bin(b, MEANS[2][k] + beta * yr + gamma * yg, LOG_SCALES[2][k])
        )
    nll = discretized_logistic_mixture_nll(pixel(*rgb), pack(3))
    assert math.exp(-nll.item()) == pytest.approx(direct, rel=1e-9)


def test_probabilities_of_all_256_grayscale_values_sum_to_one():
    torch.manual_seed(0)
    params = torch.randn(1, 9, 1, 1).expand(256, -1, -1, -1).clone()  # K = 3
    params[:, 6] = -7.0  # one component narrower than a bin: exercises the clamp and the tiny-bin branch
    x = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1) / 255
    total = torch.exp(-discretized_logistic_mixture_nll(x, params)).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_tiny_bin_falls_back_to_density_and_stays_finite():
    # mean -1, scale e^-5: level 200 lies ~230 scales away, where the sigmoid difference is exactly 0
    params = torch.tensor([0.0, -1.0, -5.0]).view(1, 3, 1, 1).requires_grad_()
    nll = discretized_logistic_mixture_nll(pixel(200).float(), params)
    y, s = 2 * 200 / 255 - 1, math.exp(-5.0)
    exact_log_mass = math.log(sigmoid(-(y - 1 / 255 + 1) / s) - sigmoid(-(y + 1 / 255 + 1) / s))
    assert torch.isfinite(nll).all()
    assert -nll.item() == pytest.approx(exact_log_mass, abs=0.1)
    nll.sum().backward()
    assert torch.isfinite(params.grad).all()


def test_log_scales_below_minus_seven_count_as_minus_seven():
    x = pixel(0, 77, 255).expand(1, 3, 2, 2).float()
    params = torch.randn(1, 20, 2, 2)
    floored, below = params.clone(), params.clone()
    floored[:, 8:14] = -7.0  # the 6 log-scales of K = 2 RGB components
    below[:, 8:14] = -20.0
    torch.testing.assert_close(discretized_logistic_mixture_nll(x, below), discretized_logistic_mixture_nll(x, floored))


def test_mixture_mean_weights_component_means_coupled_to_true_earlier_channels():
    r, g, b = 30, 200, 128
    yr, yg = 2 * r / 255 - 1, 2 * g / 255 - 1
    expected = [0.0, 0.0, 0.0]
    for k, w in enumerate(mixture_weights()):
        alpha, beta, gamma = (math.tanh(RAW_COEFFS[pair][k]) for pair in range(3))
        expected[0] += w * MEANS[0][k]
        expected[1] += w * (MEANS[1][k] + alpha * yr)
        expected[2] += w * (MEANS[2][k] + beta * yr + gamma * yg)
    expected = [min(max((e + 1) / 2, 0.0), 1.0) for e in expected]
    mean = mixture_mean(pack(3), pixel(r, g, b))
    assert mean.shape == (1, 3, 1, 1)
    assert mean.flatten().tolist() == pytest.approx(expected, rel=1e-9)


def test_bits_per_dim_of_uniform_likelihood_is_eight():
    shape = (3, 32, 32)
    uniform_nll = torch.full((4,), math.prod(shape) * math.log(256))
    torch.testing.assert_close(bits_per_dim(uniform_nll, shape), torch.full((4,), 8.0))


def tiny_model(image_shape, seed=0):
    torch.manual_seed(seed)
    return PixelCNNPP(image_shape, nr_resnet=1, nr_filters=8, nr_logistic_mix=2).eval()


@pytest.mark.parametrize("image_shape", [(1, 8, 8), (3, 8, 8)])
def test_params_of_a_pixel_never_depend_on_itself_or_later_pixels(image_shape):
    model = tiny_model(image_shape)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, *image_shape, generator=gen)
    height, width = image_shape[1:]
    with torch.no_grad():
        before = model(x)
        for i in (0, 1, 5, width - 1, width, 27, 36, height * width - 2, height * width - 1):
            changed = x.clone()
            changed[:, :, i // width, i % width] = 1 - changed[:, :, i // width, i % width]
            change = (model(changed) - before).abs().amax(dim=(0, 1)).flatten()  # per pixel, raster order
            assert change[: i + 1].max() < 1e-6, f"pixel {i} leaks into params at or before it"
            if i < height * width - 1:
                assert change[i + 1 :].max() > 1e-4, f"pixel {i} reaches no later pixel"


@pytest.mark.parametrize("image_shape,params_per_pixel", [((1, 28, 28), 3 * 5), ((3, 32, 32), 10 * 5)])
def test_forward_predictive_mean_and_nll_shapes(image_shape, params_per_pixel):
    torch.manual_seed(0)
    model = PixelCNNPP(image_shape)
    x = torch.rand(2, *image_shape)
    assert model(x).shape == (2, params_per_pixel, *image_shape[1:])
    mean = model.predictive_mean(x)
    assert mean.shape == x.shape
    assert mean.min() >= 0 and mean.max() <= 1
    nll = model.nll(x)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    assert model.l1_loss(x).shape == ()


def test_config_rebuilds_the_same_architecture():
    model = PixelCNNPP((3, 8, 8), nr_resnet=2, nr_filters=8, nr_logistic_mix=3, dropout=0.1)
    config = model.config()
    assert all(isinstance(v, (int, float, tuple, list)) for v in config.values())
    rebuilt = PixelCNNPP(**config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config() == config


def test_a_few_adam_steps_lower_the_nll():
    model = tiny_model((1, 8, 8)).train()
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(8, 1, 8, 8, generator=gen) > 0.7).float()  # binary, MNIST-like
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(10):
        loss = model.nll(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("image_shape", [(1, 4, 4), (3, 4, 4)])
def test_samples_are_seeded_8bit_images(image_shape):
    model = tiny_model(image_shape)
    first = model.sample(3, generator=torch.Generator().manual_seed(0))
    again = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert first.shape == (3, *image_shape)
    assert first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(first * 255, torch.round(first * 255))
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_image_size_not_divisible_by_four_is_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        PixelCNNPP((1, 30, 30))


def test_params_for_other_channel_count_are_refused():
    with pytest.raises(ValueError, match="not a multiple of 10"):
        discretized_logistic_mixture_nll(torch.rand(1, 3, 4, 4), torch.randn(1, 15, 4, 4))
