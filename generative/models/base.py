"""What every image model of notes §5-10 offers, and the discrete likelihoods they share.

Images are ``[B, C, H, W]`` in the form of ``generative.data.digits``: ``levels == 2`` means binary
float32 pixels in ``{0, 1}`` (a Bernoulli per pixel); ``levels > 2`` means int64 grey levels in
``0 .. levels - 1`` (a categorical per pixel, e.g. the 17 levels of the 8x8 digits).

A model's network emits *logits*: ``[B, C, H, W]`` for Bernoulli pixels, ``[B, levels, C, H, W]`` for
categorical ones. :func:`discrete_log_prob` turns them into ``log p(x)`` summed over the pixels (nats per
image), :func:`discrete_sample` draws pixels from them with a ``torch.Generator`` (same seed, same
samples). :func:`network_input` scales data to floats in ``[0, 1]`` for the network's input.

Sampling of an autoregressive model is sequential (one pass per pixel, notes §7.3, footnote 14); its
``sample`` fills the pixels in the model's order, each drawn from the conditional the network gives
for the pixels drawn so far.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ImageDensity", "LatentDensity", "bits_per_dim", "check_images", "discrete_log_prob", "discrete_sample",
    "log_mean_exp", "network_input",
]


def check_images(x: Tensor, image_shape: tuple[int, int, int], levels: int, name: str = "x") -> None:
    """Raise one ``ValueError`` naming ``name`` unless ``x`` is ``[B, *image_shape]`` data of ``levels`` levels."""
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} must be [B, {', '.join(map(str, image_shape))}], got {tuple(x.shape)}")
    if levels == 2 and not x.is_floating_point():
        raise ValueError(f"{name} must hold binary float pixels in {{0, 1}} for levels=2, got dtype {x.dtype}")
    if levels > 2 and x.dtype != torch.int64:
        raise ValueError(f"{name} must hold int64 grey levels 0..{levels - 1} for levels={levels}, got dtype {x.dtype}")


def network_input(x: Tensor, levels: int) -> Tensor:  # [B, C, H, W] data -> float in [0, 1]
    """Data as the network's float input: binary pixels as they are, grey levels scaled to ``[0, 1]``."""
    return x.float() if levels == 2 else x.float() / (levels - 1)


def discrete_log_prob(logits: Tensor, x: Tensor, levels: int) -> Tensor:
    """``log p(x)`` in nats per image, summed over every pixel (and channel).

    ``logits``: ``[B, *S]`` Bernoulli logits for ``levels == 2`` (``x`` float in ``{0, 1}``), or
    ``[B, levels, *S]`` categorical logits for ``levels > 2`` (``x`` int64); ``x``: ``[B, *S]``. -> ``[B]``.
    """
    if levels == 2:
        if logits.shape != x.shape:
            raise ValueError(f"Bernoulli logits must have x's shape {tuple(x.shape)}, got {tuple(logits.shape)}")
        return -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").flatten(1).sum(1)
    if logits.shape[1] != levels or logits.shape[2:] != x.shape[1:] or logits.shape[0] != x.shape[0]:
        raise ValueError(f"categorical logits must be [B, {levels}, *x.shape[1:]] for x {tuple(x.shape)}, "
                         f"got {tuple(logits.shape)}")
    return -F.cross_entropy(logits, x, reduction="none").flatten(1).sum(1)


def discrete_sample(logits: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Pixels drawn from ``logits`` (shapes as :func:`discrete_log_prob`): float ``{0, 1}`` or int64 levels."""
    if levels == 2:
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)
    probs = torch.softmax(logits.movedim(1, -1), dim=-1)  # [B, *S, levels]
    flat = torch.multinomial(probs.reshape(-1, levels), 1, generator=generator)  # [B * prod(S), 1]
    return flat.reshape(probs.shape[:-1])


def log_mean_exp(values: Tensor, dim: int) -> Tensor:
    """``log(mean(exp(values)))`` along ``dim``, computed stably (importance-weighted bounds, mask ensembles)."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """Negative log-likelihood per image in nats -> bits per dimension: ``nll / (dims * ln 2)``."""
    return nll_nats / (dims * math.log(2.0))


class ImageDensity(nn.Module, ABC):
    """A model with an exact likelihood of ``[B, *image_shape]`` images of ``levels`` levels.

    Subclasses set ``self.image_shape`` and ``self.levels`` and implement ``log_prob`` and ``sample``;
    ``loss`` (what training minimises, per image) defaults to ``-log_prob`` (teacher forcing: every
    conditional sees the true pixels before it, notes §7.2).
    """

    image_shape: tuple[int, int, int]
    levels: int

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B] nats
        """Exact ``log p(x)`` per image, in nats."""

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """The per-image training loss; ``-log_prob(x)`` unless the model trains otherwise (MADE's
        order-agnostic training draws an ordering from ``generator``)."""
        return -self.log_prob(x)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W]
        """``n`` images drawn from the model, in the data's form (float {0, 1} or int64 levels)."""


class LatentDensity(nn.Module, ABC):
    """A latent-variable model ``p(x) = int p(x | z) p(z) dz`` with a bound on ``log p(x)`` (notes §6.3).

    ``elbo`` and ``iwae`` are per image in nats; ``loss`` is what training minimises (``-elbo``, or the
    beta-VAE objective of §6.4).
    """

    image_shape: tuple[int, int, int]
    levels: int

    @abstractmethod
    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """One-sample evidence lower bound ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` (KL in closed form)."""

    @abstractmethod
    def iwae(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """Importance-weighted bound ``log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z|x)``;
        ``k = 1`` is a one-sample ELBO, and it rises to ``log p(x)`` as ``k`` grows (Burda et al. 2016)."""

    @abstractmethod
    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """The per-image training loss."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W]
        """``n`` images: ``z ~ N(0, I)``, then ``x ~ p(x | z)``."""
