"""The variational autoencoder and the beta-VAE (notes §6.3-6.4; Kingma & Welling 2014, Higgins et al. 2017).

Prior ``p(z) = N(0, I)``; an MLP encoder gives the Gaussian posterior approximation
``q(z|x) = N(mu, diag(sigma^2))`` through ``(mu, log sigma^2)``; an MLP decoder gives ``p(x|z)``:

* ``bernoulli``   — one logit per pixel, for binary images (``levels == 2``);
* ``categorical`` — ``levels`` logits per pixel, for int64 grey levels (``levels > 2``);
* ``gaussian``    — ``N(x; sigmoid(out), sigma_x^2)`` per pixel for continuous float data in ``[0, 1]``,
  e.g. the ``continuous`` (dequantised) form; ``sigma_x`` is one learned parameter per pixel (not a
  function of ``z``) unless ``gaussian_std`` fixes it. Its ``elbo``/``iwae`` are a *continuous* density in
  nats on the dequantised data; ``log P(discrete) >= that - D log(levels)`` (:func:`dequantised_bound`).

Notes slip: the encoder outputs the standard deviation sigma (here through ``log sigma^2``), not a "sigma^2" vector.

``elbo = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` with one reparameterised sample
(:func:`reparameterise`, ``z = mu + sigma * eps``) and the KL in closed form (:func:`gaussian_kl`);
``iwae`` is the importance-weighted bound of Burda et al. (2016), our estimate of ``log p(x)``;
``loss = -(E_q[log p(x|z)] - beta * KL)``: ``beta = 1`` is the VAE, ``beta > 1`` the beta-VAE of §6.4.
Optional free bits (Kingma et al. 2016) floor each dimension's KL in the loss at ``free_bits`` nats
(batch-averaged), which keeps latent units from collapsing early; ``elbo`` never uses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from generative.models.autoencoders import mlp
from generative.models.base import (
    LatentDensity,
    check_images,
    discrete_log_prob,
    discrete_sample,
    log_mean_exp,
    network_input,
)
from generative.nn.mlp import Activation
from generative.training import evaluating

__all__ = [
    "VAE",
    "Decoder",
    "VAEConfig",
    "dequantised_bound",
    "gaussian_kl",
    "gaussian_kl_elementwise",
    "gaussian_log_density",
    "reparameterise",
]

Decoder = Literal["bernoulli", "categorical", "gaussian"]
LOG_2PI = math.log(2 * math.pi)


# --- the math -------------------------------------------------------------------------------------------


def reparameterise(mu: Tensor, log_var: Tensor, eps: Tensor) -> Tensor:  # [..., L] x3 -> [..., L]
    """``z = mu + sigma * eps`` with ``sigma = exp(log_var / 2)``: a sample of ``N(mu, sigma^2)`` that is a
    differentiable function of ``mu`` and ``sigma`` for ``eps ~ N(0, I)`` (notes §6.3)."""
    return mu + torch.exp(0.5 * log_var) * eps


def gaussian_kl_elementwise(mu: Tensor, log_var: Tensor) -> Tensor:  # [..., L] -> [..., L]
    """``KL(N(mu, sigma^2) || N(0, 1))`` per dimension: ``(mu^2 + sigma^2 - 1 - log sigma^2) / 2``."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:  # [B, L] -> [B]
    """``KL(N(mu, diag(sigma^2)) || N(0, I))`` in closed form, summed over the latent dimensions."""
    if mu.shape != log_var.shape:
        raise ValueError(f"log_var must have mu's shape {tuple(mu.shape)}, got {tuple(log_var.shape)}")
    return gaussian_kl_elementwise(mu, log_var).sum(-1)


def gaussian_log_density(z: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:  # [..., L] -> [...]
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last dimension (shapes broadcast)."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)


def dequantised_bound(log_density: Tensor, dims: int, levels: int) -> Tensor:
    """A continuous log-density (nats) on data dequantised to ``(raw + u) / levels`` -> a lower bound on the
    discrete log-likelihood: each of the ``dims`` pixels' bins has width ``1 / levels`` (Theis et al. 2016)."""
    return log_density - dims * math.log(levels)


# --- the model ------------------------------------------------------------------------------------------


class VAE(LatentDensity):
    """A VAE with MLP encoder and decoder on ``[B, *image_shape]`` images (see the module docstring)."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int, latent: int = 16,
                 hidden: Sequence[int] = (256,), decoder: Decoder = "bernoulli", beta: float = 1.0,
                 activation: Activation = "relu", dropout: float = 0.0, free_bits: float = 0.0,
                 gaussian_std: float | None = None) -> None:
        super().__init__()
        _check_decoder(decoder, levels)
        if latent < 1:
            raise ValueError(f"latent must be >= 1, got {latent}")
        self.image_shape, self.levels, self.latent = tuple(image_shape), levels, latent
        self.decoder_kind: Decoder = decoder
        self.beta, self.free_bits = beta, free_bits
        self.kl_scale = 1.0  # a training schedule's factor on beta (KL warm-up); not a parameter, 1 outside training
        self.D = math.prod(image_shape)
        out = self.D * (levels if decoder == "categorical" else 1)
        self.encoder = mlp([self.D, *hidden, 2 * latent], activation, dropout)
        self.decoder = mlp([latent, *reversed(hidden), out], activation, dropout)
        self.log_var_x: nn.Parameter | None = None
        if decoder == "gaussian":
            value = -4.0 if gaussian_std is None else 2 * math.log(gaussian_std)
            self.log_var_x = nn.Parameter(torch.full((self.D,), value), requires_grad=gaussian_std is None)

    # encoder and decoder

    def _check(self, x: Tensor) -> None:
        if self.decoder_kind == "gaussian":
            if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape or not x.is_floating_point():
                raise ValueError(f"x must be float [B, {', '.join(map(str, self.image_shape))}], "
                                 f"got {x.dtype} {tuple(x.shape)}")
        else:
            check_images(x, self.image_shape, self.levels)

    def _input(self, x: Tensor) -> Tensor:  # data -> float [B, D]
        x = x if self.decoder_kind == "gaussian" else network_input(x, self.levels)
        return x.flatten(1).to(self.encoder[0].weight.dtype)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:  # [B, C, H, W] -> mu [B, L], log_var [B, L]
        """The parameters of ``q(z|x) = N(mu, diag(exp(log_var)))``."""
        self._check(x)
        mu, log_var = self.encoder(self._input(x)).chunk(2, dim=-1)
        return mu, log_var

    def decode_logits(self, z: Tensor) -> Tensor:  # [..., L] -> [..., C, H, W] or [..., levels, C, H, W]
        """The decoder's output: Bernoulli logits, categorical logits (levels second-to-image), or for the
        Gaussian decoder the mean before its sigmoid."""
        if z.shape[-1] != self.latent:
            raise ValueError(f"z must be [..., {self.latent}], got {tuple(z.shape)}")
        out = self.decoder(z)
        if self.decoder_kind == "categorical":
            return out.reshape(*z.shape[:-1], self.levels, *self.image_shape)
        return out.reshape(*z.shape[:-1], *self.image_shape)

    def decode_mean(self, z: Tensor) -> Tensor:  # [B, L] -> [B, C, H, W] float in [0, 1]
        """``E[x | z]`` scaled to ``[0, 1]`` (for pictures): Bernoulli probabilities, the categorical mean level
        over ``levels - 1``, or the Gaussian mean."""
        logits = self.decode_logits(z)
        if self.decoder_kind == "categorical":
            values = torch.arange(self.levels, dtype=logits.dtype, device=logits.device) / (self.levels - 1)
            return torch.einsum("bk...,k->b...", torch.softmax(logits, dim=1), values)
        return torch.sigmoid(logits)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:  # x: [B, C, H, W], z: [S, B, L] -> [S, B]
        """``log p(x | z)`` in nats per image for ``S`` latent samples of each image."""
        S, B = z.shape[:2]
        logits = self.decode_logits(z.reshape(S * B, -1))
        if self.decoder_kind == "gaussian":
            assert self.log_var_x is not None
            mean = torch.sigmoid(logits).reshape(S, B, self.D)
            target = x.flatten(1).to(mean.dtype).expand(S, B, self.D)
            return gaussian_log_density(target, mean, self.log_var_x.to(mean.dtype))
        target = x.expand(S, *x.shape).reshape(S * B, *x.shape[1:])
        return discrete_log_prob(logits, target, self.levels).reshape(S, B)

    # bounds and loss

    def _draw(self, mu: Tensor, log_var: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
        eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        return reparameterise(mu, log_var, eps)  # [S, B, L]

    def _terms(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:  # -> [B], [B, L]
        mu, log_var = self.encode(x)
        z = self._draw(mu, log_var, 1, generator)
        return self.log_likelihood(x, z)[0], gaussian_kl_elementwise(mu, log_var)

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [B, C, H, W] -> [B]
        """One-sample ``E_q[log p(x|z)] - KL(q(z|x) || N(0, I))`` in nats per image (KL in closed form)."""
        rec, kl = self._terms(x, generator)
        return rec - kl.sum(-1)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [B, C, H, W] -> [B]
        """``-(E_q[log p(x|z)] - beta KL)``, each dimension's batch-mean KL floored at ``free_bits`` if set; during a
        KL warm-up the weight is ``beta * kl_scale`` (Bowman et al. 2016: the code opens before the KL's price is paid
        in full, which keeps a beta-VAE from collapsing to the prior)."""
        rec, kl = self._terms(x, generator)
        if self.free_bits > 0:  # dims whose batch-mean KL is under the floor count as the floor, without gradient
            kl = torch.where(kl.mean(0) < self.free_bits, torch.full_like(kl, self.free_bits), kl)
        return -(rec - self.beta * self.kl_scale * kl.sum(-1))

    @torch.no_grad()
    def iwae(self, x: Tensor, k: int, generator: torch.Generator | None = None,
             chunk: int | None = None) -> Tensor:  # [B, C, H, W] -> [B]
        """``log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)`` (Burda et al. 2016), in chunks of
        ``chunk`` samples (default: about 65536 decoded images at a time), so ``k = 2000`` on 360 images fits.
        Always in evaluation mode (no dropout), like ``sample`` and ``kl_per_dimension``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with evaluating(self):
            mu, log_var = self.encode(x)
            chunk = chunk or max(1, 65536 // max(len(x), 1))
            log_w = []
            for start in range(0, k, chunk):
                z = self._draw(mu, log_var, min(chunk, k - start), generator)  # [S, B, L]
                log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                log_w.append(self.log_likelihood(x, z) + log_prior - gaussian_log_density(z, mu, log_var))
        return log_mean_exp(torch.cat(log_w), dim=0)

    @torch.no_grad()
    def kl_per_dimension(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [L]
        """Mean over the images of ``KL(q(z_j|x) || N(0, 1))`` per latent dimension ``j``; dimensions above
        0.01 nats are the "active units" of Burda et al. (2016)."""
        with evaluating(self):
            mu, log_var = self.encode(x)
        return gaussian_kl_elementwise(mu, log_var).mean(0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W]
        """``z ~ N(0, I)``, then ``x ~ p(x|z)``: float ``{0, 1}``, int64 levels, or Gaussian draws (floats)."""
        weight = self.decoder[0].weight
        z = torch.randn((n, self.latent), generator=generator, dtype=weight.dtype, device=weight.device)
        with evaluating(self):
            logits = self.decode_logits(z)
        if self.decoder_kind == "gaussian":
            assert self.log_var_x is not None
            eps = torch.randn(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
            return torch.sigmoid(logits) + torch.exp(0.5 * self.log_var_x).reshape(self.image_shape) * eps
        return discrete_sample(logits, self.levels, generator)


def _check_decoder(decoder: str, levels: int) -> None:
    if decoder not in ("bernoulli", "categorical", "gaussian"):
        raise ValueError(f"decoder must be bernoulli, categorical or gaussian, got {decoder!r}")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if decoder == "bernoulli" and levels != 2:
        raise ValueError(f"decoder='bernoulli' needs binary images (levels=2), got levels={levels}")
    if decoder == "categorical" and levels == 2:
        raise ValueError("decoder='categorical' needs grey levels (levels > 2), got levels=2; use 'bernoulli'")


@dataclass
class VAEConfig:
    """A VAE or beta-VAE with MLP encoder and decoder (notes §6.3-6.4)."""

    latent: int = 32
    """Dimensions of ``z`` (4-10 stay active on the binary digits; the rest collapse to the prior)."""
    hidden: tuple[int, ...] = (512, 256)
    """Hidden widths of the encoder (the decoder mirrors them)."""
    decoder: Decoder | None = None
    """``p(x|z)``: bernoulli, categorical or gaussian; None picks bernoulli for levels 2, categorical above."""
    beta: float = 1.0
    """Weight of the KL term in the loss (1: the VAE; > 1: the beta-VAE of notes §6.4)."""
    activation: Activation = "relu"
    """Non-linearity of the hidden layers."""
    dropout: float = 0.3
    """Dropout after every hidden layer (training only); 0.3 regularises well on the 1257 training digits."""
    free_bits: float = 0.0
    """Floor in nats on each latent dimension's batch-mean KL in the loss (0: none; Kingma et al. 2016)."""
    gaussian_std: float | None = None
    """Gaussian decoder only: a fixed pixel standard deviation; None learns one per pixel."""

    def __post_init__(self) -> None:
        if self.latent < 1:
            raise ValueError(f"latent must be >= 1, got {self.latent}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        if self.decoder is not None and self.decoder not in ("bernoulli", "categorical", "gaussian"):
            raise ValueError(f"decoder must be bernoulli, categorical, gaussian or None, got {self.decoder!r}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits}")
        if self.gaussian_std is not None and not self.gaussian_std > 0:
            raise ValueError(f"gaussian_std must be > 0 or None, got {self.gaussian_std}")

    def build(self, image_shape: tuple[int, int, int], levels: int) -> VAE:
        """The VAE for ``[B, *image_shape]`` images of ``levels`` levels."""
        decoder = self.decoder or ("bernoulli" if levels == 2 else "categorical")
        return VAE(image_shape, levels, self.latent, self.hidden, decoder, self.beta, self.activation,
                   self.dropout, self.free_bits, self.gaussian_std)
