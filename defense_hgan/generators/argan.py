"""ARGAN (Autoregressive GAN, ICLR 2018 submission): S-ARGAN, C-ARGAN and PARGAN.

The discriminator is an encoder E and an autoregressive model R: E maps an
image to a feature map, the map is factorised into a sequence of feature
groups, and R (an LSTM, then a linear map from its hidden state to the group
size, no output distribution) predicts group n+1 from groups 1..n. The L1
prediction error is the energy: E learns features that R predicts well on real
images and badly on generated ones; R fits real features only.

    S-ARGAN  spatial factorisation: the h*w feature vectors (depth 512) in raster order; 1-layer LSTM, hidden 512
    C-ARGAN  channel-wise factorisation: the 256 channels, each an h*w map; 2-layer LSTM, hidden 128
    PARGAN   S-ARGAN plus a Patch-GAN head d, a 1x1 conv on E's map to one score per position (Eq. 9-10)

Training, Algorithm 1 and Sections 3.2, 3.3 and 4 as read here. One step:

    x ~ data, z ~ N(0, I)                                   (lines 3-4)
    f_r = E(x), f_f = E(G(z)), p = R(f) for both            (lines 5-8)
    err(f) = mean of |p_n - f_{n+1}| over n = 1..N-1, the group's elements and the batch,
             p_n = R(f_1..f_n), R's prediction of group n+1
    L_R = err(f_r)                  R fits real features only (Eq. 8, line 11)
    L_E = err(f_r) - err(f_f)       E maximises fake error minus real error (Eq. 7, line 10)
    L_G = err(f_f)                  G minimises its error (Eq. 7, line 9)
    G, E and R then each take one Adam step on its own loss, all three
    gradients taken at the same parameters (lines 12-14: one simultaneous update)
    G then takes t - 1 more steps, each on a fresh z through the updated E and R

- G, E and R share the forward pass and the update, with different losses, so
  each player's gradient is taken with respect to its own parameters
  (``torch.autograd.grad``) and all are set before any optimizer steps. E and R
  (and d) share one Adam, the "discriminator" optimizer: Adam is elementwise,
  so one Adam over E and R with the same lr and betas is two Adams.
- Gradients go through both sides of |p_n - f_{n+1}|: the target is E's (and
  for fakes G's) output too, and Algorithm 1 does not stop gradients there.
- t = 3 generator updates per E/R update for every model. Section 4 states
  t = 3 "in the case of C-ARGAN and S-ARGAN" and is silent on PARGAN; PARGAN is
  S-ARGAN plus a head, so it keeps S-ARGAN's t (as this project's issue asks).
- Algorithm 1 sums the error over i = 1..N_f with target f_{i+1}, which runs
  one past the end: the sum here is over the N-1 predictions that have a
  target. It writes a sum over groups and |.| of a vector; the mean is taken
  instead. That is the same loss up to a constant factor for S- and C-ARGAN
  (which Adam does not see), and for PARGAN it puts the ARGAN and the Patch-GAN
  terms, "summed without any hyperparameter", on the same per-element scale.
- PARGAN: Eq. 9-10 in least-squares form (Mao et al.), each a mean over
  positions and batch: E and d minimise 1/2 (d(E(x)) - 1)^2 + 1/2 d(E(G(z)))^2,
  G minimises 1/2 (d(E(G(z))) - 1)^2; these add to L_E (d takes this term
  only) and to L_G.

Networks (Appendix A, CIFAR-10, adapted to 28x28 and 32x32):

    G  FC(100, 512*4*4, no bias: BN follows)-BN-ReLU - DC(512, 256)-BN-ReLU - DC(256, 128)-BN-ReLU - DC(128, C) - tanh,
       every DC stride 2, 4x4 kernels: 4 -> 8 -> 16 -> 32; for 28x28 the first DC has a 3x3 kernel,
       4 -> 7 -> 14 -> 28 (as in ``dcgan.py``); tanh's [-1, 1] moved to [0, 1]
    E  CV(C, 64) - LReLU - CV(64, 128)-BN-LReLU - CV(128, 256)-BN-LReLU - CV(256, depth)-BN-LReLU,
       every CV stride 2, 4x4 kernels: 32 -> 16 -> 8 -> 4 -> 2; for 28x28 the third CV has a 3x3
       kernel, 28 -> 14 -> 7 -> 4 -> 2. depth = 512 (S-ARGAN, PARGAN) or 256 (C-ARGAN). The map is
       2x2 for both image sizes, as for CIFAR-10 in the paper: S-ARGAN's sequence is 4 vectors of 512,
       C-ARGAN's 256 maps of 4

Section 4 says BatchNorm is in "both generator and discriminator, except the
last layer of generator and first layer of discriminator"; Appendix A lists a
BN after E's first conv too. The text's rule (also DCGAN's, and
``dcgan.Discriminator``'s) is used. LeakyReLU slope 0.2 and beta2 0.999 (the
paper gives neither). Widths scale with ``width`` (64 is the paper's).
Adam 1e-4, beta1 0.5. Images reach E in [-1, 1], as G's tanh makes them.
"""
from __future__ import annotations

import torch
from torch import nn

from defense_hgan.generators.dcgan import _down, _up, weights_init

LR = 1e-4
BETAS = (0.5, 0.999)
GENERATOR_STEPS = 3  # t
FACTORISATIONS = ("spatial", "channel")
FEATURE_SIDE = 2  # E's map is 2x2 for 28x28 and 32x32 images


class Generator(nn.Module):
    """z (N, latent_dim) ~ N(0, I) -> images (N, C, H, W) in [0, 1], for 1x28x28 or 3x32x32."""

    def __init__(self, image_shape=(1, 28, 28), latent_dim: int = 100, width: int = 64):
        super().__init__()
        channels, side, _ = image_shape
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, 8 * width * 4 * 4, bias=False),
                                nn.BatchNorm1d(8 * width * 4 * 4), nn.ReLU(True))
        self.net = nn.Sequential(
            *_up(8 * width, 4 * width, kernel=3 if side == 28 else 4),  # (N, 4w, 7|8, 7|8)
            *_up(4 * width, 2 * width),  # (N, 2w, 14|16, 14|16)
            nn.ConvTranspose2d(2 * width, channels, 4, 2, 1),  # (N, C, 28|32, 28|32)
        )
        self.apply(weights_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, 8 * self.width, 4, 4)
        return (torch.tanh(self.net(h)) + 1) / 2


class Encoder(nn.Module):
    """E: images (N, C, H, W) in [0, 1] -> feature maps (N, depth, 2, 2), for 1x28x28 or 3x32x32."""

    def __init__(self, image_shape=(1, 28, 28), depth: int = 512, width: int = 64):
        super().__init__()
        channels, side, _ = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),  # (N, w, 14|16, 14|16)
            nn.LeakyReLU(0.2, True),
            *_down(width, 2 * width),  # (N, 2w, 7|8, 7|8)
            *_down(2 * width, 4 * width, kernel=3 if side == 28 else 4),  # (N, 4w, 4, 4)
            *_down(4 * width, depth),  # (N, depth, 2, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def factorise(features: torch.Tensor, factorisation: str) -> torch.Tensor:
    """Feature maps (N, C, H, W) -> sequences (N, L, D) of feature groups (Fig. 3).

    spatial: L = H*W positions in raster order, each its C-vector; channel: L = C channels, each its H*W map.
    """
    if factorisation == "spatial":
        return features.flatten(2).transpose(1, 2)
    if factorisation == "channel":
        return features.flatten(2)
    raise ValueError(f"unknown factorisation {factorisation!r}; expected one of {', '.join(FACTORISATIONS)}")


def restore(sequences: torch.Tensor, factorisation: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The inverse of ``factorise``: sequences (N, L, D) -> feature maps (N, *shape), shape = (C, H, W)."""
    if factorisation == "spatial":
        return sequences.transpose(1, 2).reshape(len(sequences), *shape)
    if factorisation == "channel":
        return sequences.reshape(len(sequences), *shape)
    raise ValueError(f"unknown factorisation {factorisation!r}; expected one of {', '.join(FACTORISATIONS)}")


class Autoregressor(nn.Module):
    """R: an LSTM over a sequence of feature groups and a linear map from its hidden state to the next group."""

    def __init__(self, size: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(size, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, size)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Sequences (N, L, D) -> predictions (N, L-1, D): [:, n] predicts element n+1 from elements 0..n."""
        hidden, _ = self.lstm(sequences[:, :-1])  # the last element has no successor to predict
        return self.out(hidden)


def prediction_error(predictions: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 error of R, mean |p_n - f_{n+1}| over predictions and group elements: (N,)."""
    return (predictions - sequences[:, 1:]).abs().mean((1, 2))


class Discriminator(nn.Module):
    """E, R and (PARGAN) the Patch-GAN head d: images (N, C, H, W) in [0, 1] -> (R's error (N,), d's scores or None).

    R defaults to the paper's: hidden 512 and 1 layer for the spatial factorisation,
    hidden 128 and 2 layers for the channel one (whose E is 256 deep, not 512).
    """

    def __init__(self, image_shape=(1, 28, 28), factorisation: str = "spatial", patch: bool = False,
                 width: int = 64, hidden: int | None = None, layers: int | None = None):
        super().__init__()
        if factorisation not in FACTORISATIONS:
            raise ValueError(f"unknown factorisation {factorisation!r}; expected one of {', '.join(FACTORISATIONS)}")
        spatial = factorisation == "spatial"
        self.factorisation = factorisation
        depth = 8 * width if spatial else 4 * width
        self.encoder = Encoder(image_shape, depth, width)
        self.autoregressor = Autoregressor(depth if spatial else FEATURE_SIDE ** 2,
                                           hidden or (512 if spatial else 128), layers or (1 if spatial else 2))
        self.patch = nn.Conv2d(depth, 1, 1) if patch else None
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.encoder(x)
        sequences = factorise(features, self.factorisation)
        error = prediction_error(self.autoregressor(sequences), sequences)
        return error, (self.patch(features).flatten(1) if self.patch is not None else None)


class SpatialDiscriminator(Discriminator):
    """S-ARGAN's E and R."""

    def __init__(self, image_shape=(1, 28, 28), width: int = 64, hidden: int | None = None):
        super().__init__(image_shape, "spatial", patch=False, width=width, hidden=hidden)


class ChannelDiscriminator(Discriminator):
    """C-ARGAN's E and R."""

    def __init__(self, image_shape=(1, 28, 28), width: int = 64, hidden: int | None = None):
        super().__init__(image_shape, "channel", patch=False, width=width, hidden=hidden)


class PatchDiscriminator(Discriminator):
    """PARGAN's E, R and Patch-GAN head."""

    def __init__(self, image_shape=(1, 28, 28), width: int = 64, hidden: int | None = None):
        super().__init__(image_shape, "spatial", patch=True, width=width, hidden=hidden)


def _add_gradients(grads: dict[nn.Parameter, torch.Tensor], loss: torch.Tensor,
                   groups: list[tuple[float, list[nn.Parameter]]]) -> None:
    """Add sign * d loss / d p to ``grads[p]`` for every p of every (sign, params) group, in one backward pass."""
    params = [p for _, group in groups for p in group]
    signs = [sign for sign, group in groups for _ in group]
    for param, sign, grad in zip(params, signs, torch.autograd.grad(loss, params, retain_graph=True)):
        grads[param] = grads[param] + sign * grad if param in grads else sign * grad


def _step(grads: dict[nn.Parameter, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> None:
    for param, grad in grads.items():
        param.grad = grad
    for optimizer in optimizers:
        optimizer.step()


def _patch_loss(scores: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares Patch-GAN term (Eq. 9-10): 1/2 (d - target)^2, mean over positions and batch."""
    return ((scores - target) ** 2).mean() / 2


def _generator_loss(fake_error: torch.Tensor, fake_patch: torch.Tensor | None) -> torch.Tensor:
    """L_G: R's error on G's features (plus, for PARGAN, d's least-squares term towards "real")."""
    return fake_error.mean() + (_patch_loss(fake_patch, 1) if fake_patch is not None else 0)


def train_step(networks, optimizers, next_batch, generator_steps: int = GENERATOR_STEPS) -> dict[str, torch.Tensor]:
    """One simultaneous G, E, R (and d) update (Algorithm 1), then ``generator_steps - 1`` more G updates.

    Every player's gradient is of its own loss at the same parameters, and each
    backward pass serves every player whose loss holds that term with the same
    sign: the real terms E, R and d alike (R's loss has no patch term, and no
    patch term reaches R), and the fake error, without a patch head, G (+) and E (-).
    """
    generator, critic = networks["generator"], networks["discriminator"]
    g_params, e_params = list(generator.parameters()), list(critic.encoder.parameters())
    r_params = list(critic.autoregressor.parameters())
    d_params = list(critic.patch.parameters()) if critic.patch is not None else []
    real = next_batch()
    fake = generator(torch.randn(len(real), generator.latent_dim, device=real.device))
    real_error, real_patch = critic(real)
    fake_error, fake_patch = critic(fake)
    r_loss, f_loss, g_loss = real_error.mean(), fake_error.mean(), _generator_loss(fake_error, fake_patch)
    grads = {}
    if critic.patch is None:
        e_loss = r_loss - f_loss
        _add_gradients(grads, r_loss, [(1, e_params + r_params)])
        _add_gradients(grads, f_loss, [(1, g_params), (-1, e_params)])
    else:
        d_real, d_fake = _patch_loss(real_patch, 1), _patch_loss(fake_patch, 0)
        e_loss = r_loss - f_loss + d_real + d_fake
        _add_gradients(grads, r_loss + d_real, [(1, e_params + r_params + d_params)])
        _add_gradients(grads, d_fake - f_loss, [(1, e_params + d_params)])
        _add_gradients(grads, g_loss, [(1, g_params)])
    _step(grads, [optimizers["generator"], optimizers["discriminator"]])
    for _ in range(generator_steps - 1):  # G alone, on fresh z, through the updated E and R (and d)
        g_loss = _generator_loss(*critic(generator(torch.randn(len(real), generator.latent_dim, device=real.device))))
        grads = {}
        _add_gradients(grads, g_loss, [(1, g_params)])
        _step(grads, [optimizers["generator"]])
    return {"e": e_loss.detach(), "r": r_loss.detach(), "g": g_loss.detach()}

