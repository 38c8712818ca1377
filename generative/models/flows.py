"""Normalizing flows (notes §8; Dinh et al. 2014 NICE, Dinh et al. 2016 RealNVP, Kingma and Dhariwal 2018 Glow).

Direction: every :class:`Flow` here maps **data to latent**, ``z = f(x)``, and returns ``log|det J_f(x)|`` per
sample, so the change of variables reads ``log p_X(x) = log p_Z(f(x)) + log|det J_f(x)|`` (notes §8.1). The
notes write the generative direction ``x = f(z)``; their ``f^{-1}`` is our ``forward`` and their ``f`` our
``inverse`` (sampling). A :class:`FlowSequence` adds the log-determinants of its layers (notes §8.3) and
inverts them in reverse order; each layer's Jacobian is taken at that layer's own input.
Notes slip: §8.3-8.4 write ``prod_k |det J f_k(x)|^{-1}``; each factor is evaluated at the intermediate point ``z_k``
on the way from ``x`` to ``z``, not at ``x``.

Layers, generic over vectors ``[B, D]`` and images ``[B, C, H, W]`` (the channel axis is 1):

* :class:`AdditiveCoupling` (NICE, ``y_A = x_A + beta(x_B)``, log-det exactly 0) and :class:`Scaling` (NICE's
  final diagonal layer);
* :class:`AffineCoupling` (RealNVP, ``y_A = x_A * exp(s(x_B)) + t(x_B)``); ``s`` is soft-clamped,
  ``s = s_max * tanh(s_raw / s_max)``, which is the identity near 0 and keeps ``exp(s)`` within
  ``exp(+-s_max)`` so early steps cannot blow up;
* the masks of Figure 8.2: :func:`checkerboard_mask`, :func:`channel_mask` and :func:`vector_mask`; the mask is
  1 on the conditioning part ``x_B`` (passed through) and 0 on the transformed part ``x_A``;
* :class:`Squeeze` ``C x H x W -> 4C x H/2 x W/2`` and :class:`MultiScale` (factor out half of the channels
  after each scale, RealNVP/Glow), whose output is the flat latent ``[B, D]``;
* Glow's :class:`ActNorm` (data-dependent initialisation, its ``initialised`` flag in the state_dict) and
  :class:`InvConv1x1` (LU parametrisation ``W = P L (U + diag(sign * exp(log_s))``, log-det ``H W sum log|s|``);
* :class:`LogitTransform`: RealNVP's ``logit(alpha + (1 - 2 alpha) y)`` of dequantised data ``y`` in ``[0, 1]``,
  with its log-det, so likelihoods are those of the data, not of the logit space.

:class:`ToyFlow` is a RealNVP on 2-D points (MLP couplings, alternating masks) with a standard normal prior.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "Flatten", "Flow", "FlowSequence", "InvConv1x1", "LogitTransform",
    "MultiScale", "Scaling", "Squeeze", "ToyFlow", "ToyFlowConfig", "channel_mask", "checkerboard_mask", "mlp",
    "soft_clamp", "squeeze", "standard_normal_log_prob", "unsqueeze", "vector_mask",
]

Shape = tuple[int, ...]


def standard_normal_log_prob(z: Tensor) -> Tensor:  # z: [B, ...] -> [B]
    """``log N(z; 0, I)`` summed over every dimension but the batch."""
    return (-0.5 * z.square() - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def per_sample(t: Tensor) -> Tensor:  # [B, ...] -> [B]
    """Sum over every dimension but the batch."""
    return t.flatten(1).sum(1)


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """``bound * tanh(s / bound)``: the identity near 0, smooth, and within ``(-bound, bound)``."""
    return bound * torch.tanh(s / bound)


# ---------------------------------------------------------------------- masks (Figure 8.2)
def checkerboard_mask(height: int, width: int, parity: int = 0) -> Tensor:  # -> [1, 1, H, W]
    """1 where ``(i + j + parity)`` is even (the conditioning pixels), 0 elsewhere."""
    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((i + j + parity) % 2 == 0).float().view(1, 1, height, width)


def channel_mask(channels: int, parity: int = 0) -> Tensor:  # -> [1, C, 1, 1]
    """1 on the first half of the channels (``parity`` 0) or on the second half (``parity`` 1)."""
    if channels < 2:
        raise ValueError(f"channels must be >= 2 for a channel mask, got {channels}")
    first = (torch.arange(channels) < channels // 2).float()
    return (first if parity == 0 else 1 - first).view(1, channels, 1, 1)


def vector_mask(features: int, parity: int = 0) -> Tensor:  # -> [1, D]
    """1 on the even features (``parity`` 0) or on the odd ones (``parity`` 1): NICE's alternating split."""
    if features < 2:
        raise ValueError(f"features must be >= 2 for a coupling mask, got {features}")
    return ((torch.arange(features) + parity) % 2 == 0).float().view(1, features)


def mlp(features_in: int, hidden: Sequence[int], features_out: int, zero_last: bool = True) -> nn.Sequential:
    """An MLP with ReLUs; its last layer starts at zero so a coupling starts as the identity."""
    layers: list[nn.Module] = []
    width = features_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    last = nn.Linear(width, features_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


# ---------------------------------------------------------------------- the interface and composition
class Flow(nn.Module, ABC):
    """An invertible map from data to latent: ``forward(x) -> (y, log|det J(x)|)`` with the log-det ``[B]``."""

    @abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # x: [B, ...] -> ([B, ...], [B])
        """``y = f(x)`` and ``log|det J_f(x)|`` per sample."""

    @abstractmethod
    def inverse(self, y: Tensor) -> Tensor:  # y: [B, ...] -> [B, ...]
        """``x = f^{-1}(y)``."""

    def output_shape(self, shape: Shape) -> Shape:
        """The shape of one output sample for one input sample of ``shape`` (no batch axis)."""
        return shape


class FlowSequence(Flow):
    """``f = f_m o ... o f_1``: the layers in order; log-dets add; the inverse runs them in reverse (notes §8.3)."""

    def __init__(self, layers: Sequence[Flow]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y

    def output_shape(self, shape: Shape) -> Shape:
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape


# ---------------------------------------------------------------------- coupling layers (notes §8.2, §8.5)
class _Coupling(Flow):
    """A coupling with a fixed binary ``mask`` (1: pass through and condition, 0: transform)."""

    def __init__(self, mask: Tensor, net: nn.Module, mask_input: bool) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.mask_input = mask_input  # images: the mask is an extra input channel (which pixels are given)

    def conditioner(self, x: Tensor) -> Tensor:  # x: [B, C, ...] -> the net's output
        given = x * self.mask
        if self.mask_input:
            given = torch.cat([given, self.mask.expand(x.shape[0], 1, *x.shape[2:])], dim=1)
        return self.net(given)


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling ``y_A = x_A + beta(x_B)``, ``y_B = x_B``: volume preserving, log-det 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + (1 - self.mask) * self.conditioner(x), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y - (1 - self.mask) * self.conditioner(y)


class AffineCoupling(_Coupling):
    """RealNVP's affine coupling ``y_A = x_A * exp(s(x_B)) + t(x_B)``; the net emits ``[s_raw, t]`` on the channel
    axis (``2C`` channels), and ``s = soft_clamp(s_raw, s_max)``. Log-det ``sum_A s``."""

    def __init__(self, mask: Tensor, net: nn.Module, mask_input: bool, s_max: float = 2.0) -> None:
        super().__init__(mask, net, mask_input)
        if not s_max > 0:
            raise ValueError(f"s_max must be > 0, got {s_max}")
        self.s_max = s_max

    def scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:  # -> s, t of x's shape, 0 on the passed part
        s_raw, t = self.conditioner(x).chunk(2, dim=1)
        free = 1 - self.mask
        return free * soft_clamp(s_raw, self.s_max), free * t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.scale_shift(x)
        return x * torch.exp(s) + t, per_sample(s)

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self.scale_shift(y)
        return (y - t) * torch.exp(-s)


class Scaling(Flow):
    """NICE's final diagonal scaling ``y = x * exp(log_s)``, one factor per dimension; log-det ``sum log_s``."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.log_s = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * torch.exp(self.log_s), self.log_s.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_s)


# ---------------------------------------------------------------------- reshaping and multi-scale
def squeeze(x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 4C, H/2, W/2]
    """Each 2x2 block of pixels into 4 channels (RealNVP's squeeze)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs an even height and width, got {tuple(x.shape)}")
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(y: Tensor) -> Tensor:  # [B, 4C, H, W] -> [B, C, 2H, 2W]
    """The inverse of :func:`squeeze`."""
    b, c4, h, w = y.shape
    y = y.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(b, c4 // 4, 2 * h, 2 * w)


class Squeeze(Flow):
    """``C x H x W -> 4C x H/2 x W/2`` (a permutation of the entries: log-det 0)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return unsqueeze(y)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        return (4 * c, h // 2, w // 2)


class Flatten(Flow):
    """``[B, *shape] -> [B, prod(shape)]`` (log-det 0)."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flatten(1), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y.view(y.shape[0], *self.shape)

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


class MultiScale(Flow):
    """RealNVP/Glow multi-scale: ``stages[i]`` acts on what is left; after every stage but the last, the first
    half of its output channels is factored out (straight to the latent). The output is the flat latent
    ``[B, D]``: the factored parts in order, then the last stage's output. Factoring out is a re-arrangement,
    so the log-det is the sum of the stages'."""

    def __init__(self, stages: Sequence[Flow], input_shape: Shape) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_shape = tuple(input_shape)
        self.shapes: list[Shape] = []  # the shape of each latent part, in output order
        shape = self.input_shape
        for k, stage in enumerate(stages):
            shape = stage.output_shape(shape)
            if k < len(stages) - 1:
                c, h, w = shape
                if c < 2:
                    raise ValueError(f"stage {k} outputs {shape}: at least 2 channels are needed to factor out half")
                self.shapes.append((c // 2, h, w))
                shape = (c - c // 2, h, w)
        self.shapes.append(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        parts, log_det = [], x.new_zeros(x.shape[0])
        for k, stage in enumerate(self.stages):
            x, ld = stage(x)
            log_det = log_det + ld
            if k < len(self.stages) - 1:
                out = self.shapes[k][0]
                parts.append(x[:, :out].flatten(1))
                x = x[:, out:]
        parts.append(x.flatten(1))
        return torch.cat(parts, dim=1), log_det

    def inverse(self, y: Tensor) -> Tensor:
        sizes = [math.prod(s) for s in self.shapes]
        parts = [p.reshape(y.shape[0], *s) for p, s in zip(y.split(sizes, dim=1), self.shapes)]
        x = parts[-1]
        for k in range(len(self.stages) - 1, -1, -1):
            if k < len(self.stages) - 1:
                x = torch.cat([parts[k], x], dim=1)
            x = self.stages[k].inverse(x)
        return x

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


# ---------------------------------------------------------------------- Glow's layers
class ActNorm(Flow):
    """Glow's activation normalisation ``y = (x - b) * exp(log_s)`` per channel; the first forward pass sets
    ``b`` and ``log_s`` so that that batch has zero mean and unit variance per channel (data-dependent
    initialisation). The ``initialised`` flag is a buffer: a loaded model does not re-initialise.
    Log-det ``(number of positions) * sum log_s``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_s = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialised", torch.tensor(False))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:  # [C] -> [1, C, 1, ...]
        return p.view(1, -1, *([1] * (x.ndim - 2)))

    @torch.no_grad()
    def initialise(self, x: Tensor) -> None:  # x: [B, C, ...]
        """Zero mean and unit variance per channel for the batch ``x``."""
        flat = x.transpose(0, 1).flatten(1)  # [C, B * positions]
        self.bias.copy_(flat.mean(1))
        self.log_s.copy_(-torch.log(flat.std(1, unbiased=False) + 1e-6))
        self.initialised.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not bool(self.initialised):
            self.initialise(x)
        positions = math.prod(x.shape[2:])
        y = (x - self._view(self.bias, x)) * torch.exp(self._view(self.log_s, x))
        return y, (positions * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self._view(self.log_s, y)) + self._view(self.bias, y)


class InvConv1x1(Flow):
    """Glow's invertible 1x1 convolution with the LU parametrisation ``W = P L (U + diag(sign_s * exp(log_s)))``:
    ``P`` a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper triangular (learned), ``sign_s``
    fixed. Initialised from a random rotation (QR of a Gaussian drawn from ``generator``). Log-det
    ``(number of positions) * sum log|s|``."""

    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("P", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.L = nn.Parameter(lower.float())
        self.U = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> Tensor:  # -> [C, C]
        """``W = P L (U + diag(s))`` (the masks keep ``L`` unit lower and ``U`` strictly upper triangular)."""
        eye = torch.eye(len(self.log_s), dtype=self.L.dtype, device=self.L.device)
        lower = self.L * self.lower_mask + eye
        upper = self.U * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ lower @ upper

    def _mix(self, x: Tensor, w: Tensor) -> Tensor:  # channel mixing of x [B, C, ...] by w [C, C]
        return torch.einsum("ij,bj...->bi...", w, x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        positions = math.prod(x.shape[2:])
        return self._mix(x, self.weight()), (positions * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return self._mix(y, torch.linalg.inv(self.weight()))


# ---------------------------------------------------------------------- preprocessing
class LogitTransform(Flow):
    """RealNVP's preprocessing of dequantised data ``y`` in ``[0, 1]``: ``z = logit(alpha + (1 - 2 alpha) y)``,
    log-det ``sum log(1 - 2 alpha) - log p - log(1 - p)`` with ``p = alpha + (1 - 2 alpha) y``. The inverse is
    ``(sigmoid(z) - alpha) / (1 - 2 alpha)``."""

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_det = math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)
        return torch.log(p) - torch.log1p(-p), per_sample(log_det)

    def inverse(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


# ---------------------------------------------------------------------- the 2-D toy flow
@dataclass
class ToyFlowConfig:
    """A RealNVP on 2-D points: affine couplings with MLP nets and alternating masks, a standard normal prior."""

    couplings: int = 8
    """Affine coupling layers (the masks alternate between the two coordinates)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of each coupling's MLP (it emits ``s`` and ``t``)."""
    s_max: float = 3.0
    """Bound of the log-scale ``s`` (soft clamp)."""

    def __post_init__(self) -> None:
        if self.couplings < 1:
            raise ValueError(f"couplings must be >= 1, got {self.couplings}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")
        if not self.s_max > 0:
            raise ValueError(f"s_max must be > 0, got {self.s_max}")

    def build(self, features: int = 2) -> ToyFlow:
        return ToyFlow(features, self)


class ToyFlow(nn.Module):
    """A density on ``R^D`` points (``D = 2`` for the toys): ``log p(x) = log N(f(x); 0, I) + log|det J_f(x)|``."""

    def __init__(self, features: int, config: ToyFlowConfig) -> None:
        super().__init__()
        self.features = features
        self.flow = FlowSequence([
            AffineCoupling(vector_mask(features, k % 2), mlp(features, config.hidden, 2 * features), False, config.s_max)
            for k in range(config.couplings)
        ])

    def log_prob(self, x: Tensor) -> Tensor:  # x: [N, D] -> [N]
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"x must be [N, {self.features}], got {tuple(x.shape)}")
        z, log_det = self.flow(x)
        return standard_normal_log_prob(z) + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, D]
        """``z ~ N(0, I)`` from ``generator``, then ``x = f^{-1}(z)``."""
        p = next(self.parameters())
        z = torch.randn(n, self.features, generator=generator, dtype=p.dtype).to(p.device)
        return self.flow.inverse(z)
