"""NICE, RealNVP and Glow as image densities of the grey digits (notes §8.4-8.5; Dinh et al. 2014, Dinh et al.
2016, Kingma and Dhariwal 2018; dequantisation: Theis et al. 2016).

A flow is a density of continuous data, and the digits are ``L = 17`` discrete grey levels ``x`` in ``0..L-1``.
Uniform dequantisation ``y = (x + u) / L``, ``u ~ U[0, 1)^D``, gives a bound on the discrete likelihood:
``log P(x) >= E_u[log p(y)] - D log L`` (the ``- D log L`` is the change of variables of the scaling by ``1/L``).
Training minimises ``-(log p(y) - D log L)`` with one ``u`` per image drawn from the step's generator;
``log_prob(x)`` is the same bound with ``u`` from a FIXED seed (``EVAL_SEED``), deterministic so evaluations
compare, and with ``eval_samples = k > 1`` the importance-weighted version
``log (1/k) sum_i p(y_i) / L^D`` (the uniform ``u`` is the proposal), which is tighter and rises towards
``log P(x)`` as ``k`` grows. Each is, in expectation over ``u``, a lower bound of the data's log-likelihood
(so the NLL it reports is an upper bound; the logit's image of ``[0, 1]^D`` is a box, whose mass under the
prior is below one, which only loosens the bound).

The flow itself maps ``y`` to the latent: :class:`~generative.models.flows.LogitTransform`, then the
architecture, then the flat latent ``z`` ``[B, D]`` with prior ``N(0, I)``. ``sample`` draws ``z``, inverts,
and returns ``floor(y * L)`` clamped to ``0..L-1``.

* NICE: the flattened 64-vector, additive couplings with MLPs (alternating even/odd split), final scaling.
* RealNVP: multi-scale; per scale 3 checkerboard affine couplings, squeeze, 3 channel couplings, factor out
  half; the last scale 4 checkerboard couplings; small ResNets for ``s`` and ``t``.
* Glow: ``L`` levels of (squeeze, ``K`` steps of ActNorm, invertible 1x1 conv, affine coupling, split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from generative.models.base import ImageDensity, check_images, log_mean_exp
from generative.models.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Flatten,
    Flow,
    FlowSequence,
    InvConv1x1,
    LogitTransform,
    MultiScale,
    Scaling,
    Squeeze,
    channel_mask,
    checkerboard_mask,
    mlp,
    standard_normal_log_prob,
    vector_mask,
)

__all__ = [
    "FlowImageDensity", "GlowConfig", "NICEConfig", "RealNVPConfig", "conv_net", "dequantise", "discrete_bound",
    "glow_flow", "nice_flow", "realnvp_flow",
]

EVAL_SEED = 4321
"""Seed of the dequantisation noise of ``log_prob`` (the same every call, so evaluations compare)."""


def dequantise(x: Tensor, levels: int, u: Tensor) -> Tensor:  # x: [B, C, H, W] int64, u: same shape in [0, 1)
    """``y = (x + u) / L``: continuous data in ``[0, 1]`` whose density bounds the discrete likelihood."""
    return (x.to(u.dtype) + u) / levels


def discrete_bound(log_p_y: Tensor, dims: int, levels: int) -> Tensor:  # log_p_y: [...] -> [...]
    """``log p(y) - D log L``: a one-sample lower bound of ``log P(x)`` in nats (Theis et al. 2016)."""
    return log_p_y - dims * math.log(levels)


def _check_levels(levels: int) -> None:
    if levels == 2:
        raise ValueError("flows model grey levels, not binary pixels: train them with --data digits-grey")
    if levels < 2:
        raise ValueError(f"levels must be > 2, got {levels}")


class ResBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:  # [B, W, H, W]
        return x + self.body(x)


def conv_net(channels_in: int, width: int, channels_out: int, blocks: int) -> nn.Sequential:
    """The coupling network of the image flows: 3x3 conv, ``blocks`` residual blocks, ReLU, then a 3x3 conv that
    starts at zero (each coupling starts as the identity)."""
    last = nn.Conv2d(width, channels_out, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(channels_in, width, 3, padding=1), *[ResBlock(width) for _ in range(blocks)],
                         nn.ReLU(), last)


def _affine(mask: Tensor, channels: int, width: int, blocks: int, s_max: float) -> AffineCoupling:
    """An affine coupling with a conv net; a spatial (checkerboard) mask is also the net's extra input channel."""
    spatial = mask.shape[1] == 1
    return AffineCoupling(mask, conv_net(channels + spatial, width, 2 * channels, blocks), spatial, s_max)


def realnvp_flow(image_shape: tuple[int, int, int], scales: int, width: int, blocks: int, s_max: float) -> MultiScale:
    """RealNVP's multi-scale architecture (Dinh et al. 2016, Figure 8.2's masks) for ``image_shape``."""
    stages: list[Flow] = []
    c, h, w = image_shape
    for k in range(scales):
        if min(h, w) < 2:
            raise ValueError(f"scales={scales} is too many for image_shape {image_shape} (scale {k} is {h}x{w})")
        if k == scales - 1:
            stages.append(FlowSequence([_affine(checkerboard_mask(h, w, j % 2), c, width, blocks, s_max)
                                        for j in range(4)]))
            break
        if h % 2 or w % 2:
            raise ValueError(f"image_shape {image_shape}: scale {k} is {h}x{w}, not divisible by 2 for a squeeze")
        layers: list[Flow] = [_affine(checkerboard_mask(h, w, j % 2), c, width, blocks, s_max) for j in range(3)]
        layers.append(Squeeze())
        c, h, w = 4 * c, h // 2, w // 2
        layers += [_affine(channel_mask(c, j % 2), c, width, blocks, s_max) for j in range(3)]
        stages.append(FlowSequence(layers))
        c = c - c // 2  # half of the channels is factored out
    return MultiScale(stages, image_shape)


def glow_flow(image_shape: tuple[int, int, int], L: int, K: int, width: int, blocks: int, s_max: float) -> MultiScale:
    """Glow (Kingma and Dhariwal 2018): ``L`` levels of (squeeze, ``K`` steps of flow), a split after each level
    but the last; a step is ActNorm, an invertible 1x1 convolution and an affine coupling on a channel split."""
    stages: list[Flow] = []
    c, h, w = image_shape
    for level in range(L):
        if h % 2 or w % 2:
            raise ValueError(f"L={L} is too many for image_shape {image_shape} (level {level} is {h}x{w})")
        c, h, w = 4 * c, h // 2, w // 2
        layers: list[Flow] = [Squeeze()]
        for k in range(K):
            layers += [ActNorm(c), InvConv1x1(c), _affine(channel_mask(c, k % 2), c, width, blocks, s_max)]
        stages.append(FlowSequence(layers))
        c = c - c // 2
    return MultiScale(stages, image_shape)


def nice_flow(image_shape: tuple[int, int, int], couplings: int, hidden: tuple[int, ...]) -> FlowSequence:
    """NICE (Dinh et al. 2014): the flattened image, ``couplings`` additive couplings (alternating even/odd
    halves), then the diagonal scaling."""
    d = math.prod(image_shape)
    layers: list[Flow] = [Flatten(image_shape)]
    layers += [AdditiveCoupling(vector_mask(d, k % 2), mlp(d, hidden, d), False) for k in range(couplings)]
    return FlowSequence([*layers, Scaling((d,))])


class FlowImageDensity(ImageDensity):
    """An image flow on dequantised grey levels: ``log p(y) = log N(f(y); 0, I) + log|det J_f(y)|`` with
    ``f = architecture o logit``; the discrete likelihood is bounded as in the module docstring."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int, flow: Flow, alpha: float,
                 eval_samples: int = 1) -> None:
        super().__init__()
        _check_levels(levels)
        if eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1, got {eval_samples}")
        self.image_shape, self.levels, self.eval_samples = tuple(image_shape), levels, eval_samples
        self.dims = math.prod(image_shape)
        self.flow = FlowSequence([LogitTransform(alpha), flow])

    def log_density(self, y: Tensor) -> Tensor:  # y: [B, C, H, W] in [0, 1] -> [B] nats
        """The continuous ``log p(y)`` of dequantised images."""
        z, log_det = self.flow(y)
        return standard_normal_log_prob(z) + log_det

    def bound(self, x: Tensor, u: Tensor) -> Tensor:  # x: [B, C, H, W] int64, u: [B, C, H, W] -> [B]
        """``log p((x + u) / L) - D log L``: one dequantised lower bound of ``log P(x)``."""
        return discrete_bound(self.log_density(dequantise(x, self.levels, u)), self.dims, self.levels)

    def noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor:  # -> [B, C, H, W] in [0, 1)
        """Uniform dequantisation noise ``u`` for ``x``, drawn (on the CPU) in the model's dtype."""
        dtype = next(self.parameters()).dtype
        return torch.rand(x.shape, generator=generator, dtype=dtype).to(x.device)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # x: [B, C, H, W] -> [B]
        check_images(x, self.image_shape, self.levels)
        return -self.bound(x, self.noise(x, generator))

    def log_prob(self, x: Tensor) -> Tensor:  # x: [B, C, H, W] -> [B]
        """The dequantised bound with noise from the fixed seed ``EVAL_SEED`` (importance-weighted over
        ``eval_samples`` draws); deterministic, and a lower bound of the discrete ``log P(x)``."""
        check_images(x, self.image_shape, self.levels)
        generator = torch.Generator().manual_seed(EVAL_SEED)
        bounds = [self.bound(x, self.noise(x, generator)) for _ in range(self.eval_samples)]
        return log_mean_exp(torch.stack(bounds), dim=0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W] int64
        p = next(self.parameters())
        z = torch.randn(n, self.dims, generator=generator, dtype=p.dtype).to(p.device)
        y = self.flow.inverse(z)
        return torch.floor(y * self.levels).clamp(0, self.levels - 1).long()


@dataclass
class ImageFlowConfig:
    """What every image flow shares: the logit preprocessing and the draws of the evaluation bound."""

    alpha: float = 0.005
    """Logit preprocessing ``logit(alpha + (1 - 2 alpha) y)`` (0.005 beat 0.05 and 0.001 on the grey digits)."""
    eval_samples: int = 1
    """Dequantisation draws of ``log_prob`` (importance-weighted bound when > 1)."""

    def density(self, image_shape: tuple[int, int, int], levels: int, flow: Flow) -> FlowImageDensity:
        """The image density of ``flow`` with this preprocessing and evaluation."""
        return FlowImageDensity(image_shape, levels, flow, self.alpha, self.eval_samples)


@dataclass
class NICEConfig(ImageFlowConfig):
    """NICE on the flattened image: additive couplings with MLPs, then a diagonal scaling."""

    couplings: int = 4
    """Additive coupling layers (the even/odd split alternates)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of each coupling's MLP."""

    def __post_init__(self) -> None:
        if self.couplings < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"couplings must be >= 1 and hidden positive widths, got {self.couplings}, {self.hidden}")
        _check_common(self.alpha, self.eval_samples)

    def build(self, image_shape: tuple[int, int, int], levels: int) -> FlowImageDensity:
        _check_levels(levels)
        return self.density(image_shape, levels, nice_flow(image_shape, self.couplings, self.hidden))


@dataclass
class RealNVPConfig(ImageFlowConfig):
    """RealNVP's multi-scale flow: checkerboard and channel affine couplings, squeeze, factor out."""

    scales: int = 2
    """Scales; each but the last ends with a squeeze and factors out half of the channels."""
    width: int = 32
    """Channels of the coupling networks."""
    blocks: int = 1
    """Residual blocks per coupling network."""
    s_max: float = 2.0
    """Bound of the log-scale ``s`` (soft clamp ``s_max * tanh(s / s_max)``)."""

    def __post_init__(self) -> None:
        if self.scales < 1 or self.width < 1 or self.blocks < 0:
            raise ValueError(f"scales and width must be >= 1 and blocks >= 0, got {self.scales}, {self.width}, "
                             f"{self.blocks}")
        _check_common(self.alpha, self.eval_samples, self.s_max)

    def build(self, image_shape: tuple[int, int, int], levels: int) -> FlowImageDensity:
        _check_levels(levels)
        flow = realnvp_flow(image_shape, self.scales, self.width, self.blocks, self.s_max)
        return self.density(image_shape, levels, flow)


@dataclass
class GlowConfig(ImageFlowConfig):
    """Glow: ``L`` levels of ``K`` steps (ActNorm, invertible 1x1 convolution, affine coupling)."""

    L: int = 2
    """Levels (each squeezes; each but the last factors out half of the channels)."""
    K: int = 4
    """Steps of flow per level."""
    width: int = 32
    """Channels of the coupling networks."""
    blocks: int = 1
    """Residual blocks per coupling network."""
    s_max: float = 2.0
    """Bound of the log-scale ``s`` (soft clamp ``s_max * tanh(s / s_max)``)."""

    def __post_init__(self) -> None:
        if self.L < 1 or self.K < 1 or self.width < 1 or self.blocks < 0:
            raise ValueError(f"L, K and width must be >= 1 and blocks >= 0, got {self.L}, {self.K}, {self.width}, "
                             f"{self.blocks}")
        _check_common(self.alpha, self.eval_samples, self.s_max)

    def build(self, image_shape: tuple[int, int, int], levels: int) -> FlowImageDensity:
        _check_levels(levels)
        flow = glow_flow(image_shape, self.L, self.K, self.width, self.blocks, self.s_max)
        return self.density(image_shape, levels, flow)


def _check_common(alpha: float, eval_samples: int, s_max: float = 1.0) -> None:
    if not 0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
    if eval_samples < 1:
        raise ValueError(f"eval_samples must be >= 1, got {eval_samples}")
    if not s_max > 0:
        raise ValueError(f"s_max must be > 0, got {s_max}")
