"""PixelCNN++ (Salimans et al. 2017): the autoregressive teacher p_xi of HGAN.

The network reads an image once and returns, for every pixel, the parameters
of a mixture of K discretized logistics conditioned only on the pixels before
it in raster order. Two streams keep that causal: u sees the rows above, ul
the rows above and the pixels to the left in the same row. Both run an up pass
of gated resnets through three resolutions (H, H/2, H/4) and a down pass back
that takes every up-pass output as a skip connection, as in the paper.

Images are float NCHW in [0, 1] at every public function; the model and the
likelihood work on y = 2x - 1 in [-1, 1], where the 256 levels are bins of
width 2/255.

Parameter layout along dim 1 of `params` (N, P, H, W), K components, C channels:
    [logits (K) | means (C*K) | log-scales (C*K) | coefficients (C(C-1)/2 * K)]
so P = 3K for grayscale and 10K for RGB. Coefficient (c, j) for j < c, in the
order (1, 0), (2, 0), (2, 1), makes channel c's mean move with channel j:
the mean of G depends on R, the mean of B on R and G.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

MIN_LOG_SCALE = -7.0  # the paper's floor: keeps 1/s finite for near-deterministic pixels
TINY_BIN = 1e-5  # below this bin mass, sigmoid differences lose all precision; use the density instead


# Discretized logistic mixture: pure functions


def _params_per_component(channels: int) -> int:
    """A logit, then per channel a mean and a log-scale, then one coefficient per earlier channel."""
    return 1 + 2 * channels + channels * (channels - 1) // 2


def _split_params(params: torch.Tensor, channels: int):
    """(N, P, H, W) -> logits (N, K, H, W); means, log-scales (N, C, K, H, W); coefficients (N, C(C-1)/2, K, H, W)."""
    n, p, h, w = params.shape
    per = _params_per_component(channels)
    if p % per:
        raise ValueError(
            f"params has {p} channels, which is not a multiple of {per} (the parameters per mixture "
            f"component for {channels}-channel images); pass params from a PixelCNNPP built for this image shape"
        )
    k = p // per
    logits = params[:, :k]
    means, log_scales, coeffs = params[:, k:].reshape(n, -1, k, h, w).split(
        [channels, channels, channels * (channels - 1) // 2], dim=1
    )
    return logits, means, log_scales.clamp(min=MIN_LOG_SCALE), torch.tanh(coeffs)


def _coupled_means(means: torch.Tensor, coeffs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mu_c + sum_{j<c} alpha_cj * y_j per component: each channel conditions linearly on the earlier ones.

    means (N, C, K, H, W), coeffs (N, C(C-1)/2, K, H, W), y (N, C, H, W) in [-1, 1] -> (N, C, K, H, W).
    """
    coupled, pair = [], 0
    for c in range(means.shape[1]):
        mean = means[:, c]
        for j in range(c):
            mean = mean + coeffs[:, pair] * y[:, j : j + 1]
            pair += 1
        coupled.append(mean)
    return torch.stack(coupled, dim=1)


def _logistic_bin_log_prob(y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(bin of y) = log[sigmoid((y + 1/255 - mu)/s) - sigmoid((y - 1/255 - mu)/s)].

    The bins at -1 and 1 extend to -inf and +inf so the 256 probabilities sum to one. Each
    log is taken in its stable form (log sigmoid(a) = a - softplus(a), log(1 - sigmoid(b)) =
    -softplus(b)), and where the bin mass underflows, the density at the bin centre times the
    bin width 2/255 stands in for it.
    """
    inv_scale = torch.exp(-log_scale)
    centered = y - mean
    plus = inv_scale * (centered + 1 / 255)
    minus = inv_scale * (centered - 1 / 255)
    log_cdf_plus = plus - F.softplus(plus)  # the bin of 0 (y = -1)
    log_one_minus_cdf_minus = -F.softplus(minus)  # the bin of 255 (y = 1)
    bin_mass = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_scale * centered
    log_density_mid = mid - log_scale - 2 * F.softplus(mid)
    log_mass = torch.where(
        bin_mass > TINY_BIN, torch.log(bin_mass.clamp(min=1e-12)), log_density_mid - math.log(127.5)
    )
    return torch.where(y < -0.999, log_cdf_plus, torch.where(y > 0.999, log_one_minus_cdf_minus, log_mass))


def _check_pair(x: torch.Tensor, params: torch.Tensor) -> None:
    if x.dim() != 4 or params.dim() != 4 or x.shape[0] != params.shape[0] or x.shape[2:] != params.shape[2:]:
        raise ValueError(
            f"expected images (N, C, H, W) and params (N, P, H, W) with the same N, H, W; "
            f"got images {tuple(x.shape)} and params {tuple(params.shape)}"
        )


def discretized_logistic_mixture_nll(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image (N,) for 8-bit images x in [0, 1] under the per-pixel mixtures in params."""
    _check_pair(x, params)
    y = 2 * x - 1
    logits, means, log_scales, coeffs = _split_params(params, x.shape[1])
    means = _coupled_means(means, coeffs, y)
    log_probs = _logistic_bin_log_prob(y.unsqueeze(2), means, log_scales).sum(dim=1)  # (N, K, H, W)
    log_probs = torch.logsumexp(log_probs + F.log_softmax(logits, dim=1), dim=1)  # (N, H, W)
    return -log_probs.flatten(1).sum(dim=1)


def bits_per_dim(nll: torch.Tensor, image_shape) -> torch.Tensor:
    """nll / (C*H*W*ln 2): nats per image to bits per sub-pixel, the unit the literature reports."""
    return nll / (math.prod(image_shape) * math.log(2))


def mixture_mean(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_k pi_k mu_k per pixel, mapped to [0, 1] (N, C, H, W); the channel couplings use the true x.

    The weights are softmax(logits) for every channel (not re-weighted by the earlier channels'
    likelihoods), so the image is what one parallel pass predicts under teacher forcing.
    """
    _check_pair(x, params)
    logits, means, _, coeffs = _split_params(params, x.shape[1])
    means = _coupled_means(means, coeffs, 2 * x - 1)
    mean = (F.softmax(logits, dim=1).unsqueeze(1) * means).sum(dim=2)  # (N, C, H, W) in [-1, 1] space
    return ((mean + 1) / 2).clamp(0, 1)


# Causal convolutions


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros on top), so a row sees only the rows strictly above it."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (zeros on the left), so a pixel sees only the pixels strictly left of it."""
    return F.pad(x, (1, 0))[..., :-1]


def _causal_padding(kernel: tuple[int, int], right: bool) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that aligns a kernel's bottom row with the output row.

    Down-shifted (right=False): centred horizontally, so a pixel sees its row and those above.
    Down-right-shifted (right=True): also aligned on the right column, so it sees only the left.
    """
    kh, kw = kernel
    left = kw - 1 if right else (kw - 1) // 2
    return left, kw - 1 - left, kh - 1, 0


class ShiftedConv2d(nn.Module):
    """A convolution whose output at (i, j) reads inputs only at rows <= i (and columns <= j with right=True)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], right: bool = False, stride: int = 1):
        super().__init__()
        self.padding = _causal_padding(kernel, right)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.padding))


class ShiftedConvTranspose2d(nn.Module):
    """Up-sampling by 2 that keeps the causal order: a full transposed convolution, cropped on the
    sides the matching ShiftedConv2d padded, mirrored (the bottom, and the right for right=True)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], right: bool = False):
        super().__init__()
        left, rightmost, top, _ = _causal_padding(kernel, right)
        self.crop = (rightmost, left, top)  # (left, right, bottom)
        self.conv = nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, output_padding=1)

    def forward(self, x):
        x = self.conv(x)  # (N, C, 2H + kh - 1, 2W + kw - 1)
        left, right, bottom = self.crop
        return x[:, :, : x.shape[2] - bottom, left : x.shape[3] - right]  # (N, C, 2H, 2W)


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """elu([x, -x]): keeps the information of both signs, doubling the channels."""
    return F.elu(torch.cat([x, -x], dim=1))


# Network

U_KERNEL, UL_KERNEL = (2, 3), (2, 2)


class GatedResnet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv(concat_elu(conv(concat_elu(x)) + nin(concat_elu(aux)))).

    The sigmoid gate decides per feature how much each block adds; aux carries the other stream or the skips.
    """

    def __init__(self, filters: int, kernel, right: bool, aux_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv_in = ShiftedConv2d(2 * filters, filters, kernel, right)
        self.nin_aux = nn.Conv2d(2 * aux_channels, filters, 1) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = ShiftedConv2d(2 * filters, 2 * filters, kernel, right)
        with torch.no_grad():
            self.conv_out.conv.weight.mul_(0.1)  # as the reference's init_scale=0.1: each block starts close to x

    def forward(self, x, aux=None):
        h = self.conv_in(concat_elu(x))
        if aux is not None:
            h = h + self.nin_aux(concat_elu(aux))
        a, b = self.conv_out(self.dropout(concat_elu(h))).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class StreamBlock(nn.Module):
    """One gated resnet on each stream; ul also reads u (the rows above), and on the down pass both
    read the up pass's outputs at the same depth (u its u, ul the new u and its ul)."""

    def __init__(self, filters: int, dropout: float, down_pass: bool):
        super().__init__()
        self.u = GatedResnet(filters, U_KERNEL, False, filters if down_pass else 0, dropout)
        self.ul = GatedResnet(filters, UL_KERNEL, True, (2 if down_pass else 1) * filters, dropout)

    def forward(self, u, ul, u_skip=None, ul_skip=None):
        u = self.u(u, u_skip)
        ul = self.ul(ul, u if ul_skip is None else torch.cat([u, ul_skip], dim=1))
        return u, ul


class StreamResample(nn.Module):
    """Halve (on the up pass) or, with upsample=True, double (on the down pass) the resolution of
    both streams with causal strided (transposed) convolutions."""

    def __init__(self, filters: int, upsample: bool):
        super().__init__()
        conv = ShiftedConvTranspose2d if upsample else partial(ShiftedConv2d, stride=2)
        self.u = conv(filters, filters, U_KERNEL, right=False)
        self.ul = conv(filters, filters, UL_KERNEL, right=True)

    def forward(self, u, ul):
        return self.u(u), self.ul(ul)


class PixelCNNPP(nn.Module):
    """PixelCNN++: images (N, C, H, W) in [0, 1] -> discretized logistic mixture params (N, P, H, W).

    Args: image_shape (C, H, W), C in {1, 3}, H and W multiples of 4 (two down-samplings by 2);
    nr_resnet gated resnets per stage (the up pass has nr_resnet per resolution, the down pass
    nr_resnet + 1 at the two finer ones); nr_filters channels per stream; nr_logistic_mix K;
    dropout inside every gated resnet. P = 3K for grayscale, 10K for RGB.

        model = PixelCNNPP((1, 28, 28))
        loss = model.nll(images).mean()  # nats per image; bits_per_dim(nll, model.image_shape)
    """

    RESOLUTIONS = 3  # H, H/2, H/4, as in the paper

    def __init__(self, image_shape=(1, 28, 28), nr_resnet=1, nr_filters=32, nr_logistic_mix=5, dropout=0.0):
        super().__init__()
        channels, height, width = image_shape
        if channels not in (1, 3):
            raise ValueError(
                f"PixelCNNPP models grayscale (1) or RGB (3) images; got image_shape {tuple(image_shape)}"
            )
        factor = 2 ** (self.RESOLUTIONS - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"PixelCNNPP halves the resolution {self.RESOLUTIONS - 1} times, so height and width must be "
                f"multiples of {factor}; got image_shape {tuple(image_shape)} (pad or crop the images, e.g. to 28 or 32)"
            )
        self.image_shape = tuple(image_shape)
        self.nr_resnet, self.nr_filters = nr_resnet, nr_filters
        self.nr_logistic_mix, self.dropout = nr_logistic_mix, dropout
        # +1 input channel of ones: tells the first convolutions image from zero padding
        self.u_init = ShiftedConv2d(channels + 1, nr_filters, U_KERNEL)
        self.ul_init_above = ShiftedConv2d(channels + 1, nr_filters, (1, 3))
        self.ul_init_left = ShiftedConv2d(channels + 1, nr_filters, (2, 1), right=True)
        self.up = nn.ModuleList(
            nn.ModuleList(StreamBlock(nr_filters, dropout, False) for _ in range(nr_resnet))
            for _ in range(self.RESOLUTIONS)
        )
        self.down = nn.ModuleList(
            nn.ModuleList(StreamBlock(nr_filters, dropout, True) for _ in range(nr_resnet + (level > 0)))
            for level in range(self.RESOLUTIONS)
        )
        self.downsample = nn.ModuleList(StreamResample(nr_filters, upsample=False) for _ in range(self.RESOLUTIONS - 1))
        self.upsample = nn.ModuleList(StreamResample(nr_filters, upsample=True) for _ in range(self.RESOLUTIONS - 1))
        self.out = nn.Conv2d(nr_filters, nr_logistic_mix * _params_per_component(channels), 1)

    def config(self) -> dict:
        """The constructor arguments: PixelCNNPP(**model.config()) rebuilds this architecture."""
        return {
            "image_shape": self.image_shape,
            "nr_resnet": self.nr_resnet,
            "nr_filters": self.nr_filters,
            "nr_logistic_mix": self.nr_logistic_mix,
            "dropout": self.dropout,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ValueError(f"expected images (N, {expected}) in [0, 1]; got {tuple(x.shape)}")
        y = 2 * x - 1
        y = torch.cat([y, torch.ones_like(y[:, :1])], dim=1)  # (N, C + 1, H, W)
        # the shifts make the first layer strict: pixel (i, j) never reads itself
        u = down_shift(self.u_init(y))
        ul = down_shift(self.ul_init_above(y)) + right_shift(self.ul_init_left(y))
        skips = [(u, ul)]
        for level, blocks in enumerate(self.up):  # H -> H/2 -> H/4
            if level:
                skips.append(self.downsample[level - 1](u, ul))
            for block in blocks:
                skips.append(block(*skips[-1]))
            u, ul = skips[-1]
        skips.pop()
        for level, blocks in enumerate(self.down):  # H/4 -> H/2 -> H, consuming the up pass in reverse
            if level:
                u, ul = self.upsample[level - 1](u, ul)
            for block in blocks:
                u, ul = block(u, ul, *skips.pop())
        return self.out(F.elu(ul))  # (N, P, H, W)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) in nats per image (N,)."""
        return discretized_logistic_mixture_nll(x, self(x))

    def predictive_mean(self, x: torch.Tensor) -> torch.Tensor:
        """x_xi of HGAN: every pixel's predicted mean given the true pixels before it, in one pass (N, C, H, W)."""
        return mixture_mean(self(x), x)

    def l1_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The HGAN paper's teacher loss |x - p_xi(x)| (Algorithm 1, line 15), averaged."""
        return (x - self.predictive_mean(x)).abs().mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) on the 256-level grid, drawn pixel by pixel: H*W forward passes."""
        channels, height, width = self.image_shape
        device = self.out.weight.device
        x = torch.zeros(n, *self.image_shape, device=device)
        for i in range(height):
            for j in range(width):
                params = self(x)[:, :, i : i + 1, j : j + 1]
                logits, means, log_scales, coeffs = _split_params(params, channels)
                # Gumbel-max picks one component per image; keep its K axis as size 1
                gumbel = -torch.log(-torch.log(self._uniform(logits.shape, generator, device)))
                pick = F.one_hot((logits + gumbel).argmax(dim=1), self.nr_logistic_mix).movedim(-1, 1).unsqueeze(1)
                means, log_scales, coeffs = ((t * pick).sum(dim=2, keepdim=True) for t in (means, log_scales, coeffs))
                noise = self._uniform((n, channels, 1, 1, 1), generator, device)
                y = torch.zeros(n, channels, 1, 1, device=device)
                for c in range(channels):  # G after R, B after R and G
                    mean = _coupled_means(means, coeffs, y)[:, c]
                    y[:, c] = (mean + torch.exp(log_scales[:, c]) * torch.logit(noise[:, c])).clamp(-1, 1)[:, 0]
                x[:, :, i, j] = torch.round((y[:, :, 0, 0] + 1) * 127.5) / 255
        return x

    @staticmethod
    def _uniform(shape, generator, device) -> torch.Tensor:
        """U(eps, 1 - eps): keeps log(u) and logit(u) finite."""
        return torch.rand(shape, generator=generator, device=device).clamp(1e-5, 1 - 1e-5)
