"""The variational RNN (Chung et al. 2015; notes §7.6) and a plain RNN baseline on stroke-3 pen trajectories.

A drawing is ``x_1 .. x_T`` with ``x_t = (dx, dy, pen_up)`` (``generative.data.strokes``). Both models emit,
per step, the parameters of one output distribution (:func:`stroke_log_prob`): a Gaussian on the offset
``(dx, dy)``, bivariate (means, standard deviations and a correlation ``rho``, as Graves 2013) or diagonal
(``rho = 0``), times a Bernoulli on ``pen_up``.

VRNN, with a recurrent state ``h_t`` (a GRU or LSTM cell), feature extractors ``phi_x`` and ``phi_z``:

* prior      ``p(z_t | h_{t-1}) = N(mu_0t, diag sigma_0t^2)``, ``[mu_0t, log sigma_0t^2] = f_prior(h_{t-1})``;
* encoder    ``q(z_t | x_t, h_{t-1}) = N(mu_zt, diag sigma_zt^2)`` from ``f_enc(phi_x(x_t), h_{t-1})``;
* decoder    ``p(x_t | z_t, h_{t-1})`` from ``f_dec(phi_z(z_t), h_{t-1})``;
* recurrence ``h_t = f(h_{t-1}, [phi_x(x_t), phi_z(z_t)])``.

Training maximises the ELBO ``sum_t E_q[log p(x_t | z_<=t, x_<t)] - KL(q(z_t | .) || p(z_t | h_{t-1}))``
with one reparameterised ``z_t`` per step and the Gaussian KL in closed form (:func:`gaussian_kl`).
In generation ``z_t`` is drawn from the learned prior ``p(z_t | h_{t-1})``; the notes' ``q_phi(. | h)`` is a slip.

``StrokeRNN`` is the deterministic baseline with the same state size and output distribution:
``p(x_t | x_<t)`` from ``f_dec(h_{t-1})``, ``h_t = f(h_{t-1}, phi_x(x_t))``, so ``log p(x)`` is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.models.base import log_mean_exp

__all__ = [
    "PARAMS",
    "VRNN",
    "StrokeRNN",
    "StrokeRNNConfig",
    "VRNNConfig",
    "gaussian_kl",
    "gaussian_log_prob",
    "sample_stroke",
    "stroke_log_prob",
]

Covariance = Literal["diagonal", "bivariate"]
Cell = Literal["gru", "lstm"]
PARAMS = 6
"""Output parameters per step: ``mu_x, mu_y, log sigma_x, log sigma_y, rho (pre-tanh), pen_up logit``."""
LOG_SIGMA_MIN = -6.0
"""Floor of the offsets' log standard deviation (keeps the density bounded)."""


# ---------------------------------------------------------------------- pure functions
def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:  # [*S, Z] x4 -> [*S]
    """``KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p))`` in closed form, summed over the last dim:
    ``1/2 sum (logvar_p - logvar_q + (e^logvar_q + (mu_q - mu_p)^2) / e^logvar_p - 1)``."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0).sum(-1)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:  # [*S, Z] x3 -> [*S]
    """``log N(z; mu, diag e^logvar)``, summed over the last dim."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp()).sum(-1)


def _unpack(params: Tensor, covariance: Covariance) -> tuple[Tensor, ...]:
    if params.shape[-1] != PARAMS:
        raise ValueError(f"params must be [..., {PARAMS}], got {tuple(params.shape)}")
    mu_x, mu_y, log_sx, log_sy, rho_raw, pen_logit = params.unbind(-1)
    log_sx, log_sy = log_sx.clamp(min=LOG_SIGMA_MIN), log_sy.clamp(min=LOG_SIGMA_MIN)
    rho = 0.99 * torch.tanh(rho_raw) if covariance == "bivariate" else torch.zeros_like(rho_raw)
    return mu_x, mu_y, log_sx, log_sy, rho, pen_logit


def stroke_log_prob(params: Tensor, x: Tensor, covariance: Covariance = "bivariate") -> Tensor:  # [*S, 6], [*S, 3]
    """``log N((dx, dy); mu, Sigma) + log Bern(pen_up; sigmoid(logit))`` per step -> ``[*S]`` nats, with
    ``Sigma = [[sx^2, rho sx sy], [rho sx sy, sy^2]]`` (``rho = 0`` for ``"diagonal"``)."""
    if x.shape[-1] != 3 or x.shape[:-1] != params.shape[:-1]:
        raise ValueError(f"x must be [*S, 3] with params [*S, {PARAMS}], got {tuple(x.shape)}, {tuple(params.shape)}")
    mu_x, mu_y, log_sx, log_sy, rho, pen_logit = _unpack(params, covariance)
    zx, zy = (x[..., 0] - mu_x) / log_sx.exp(), (x[..., 1] - mu_y) / log_sy.exp()
    one_minus = 1.0 - rho**2
    gauss = (-math.log(2 * math.pi) - log_sx - log_sy - 0.5 * torch.log(one_minus)
             - (zx**2 + zy**2 - 2 * rho * zx * zy) / (2 * one_minus))
    pen = -F.binary_cross_entropy_with_logits(pen_logit, x[..., 2], reduction="none")
    return gauss + pen


def sample_stroke(params: Tensor, generator: torch.Generator | None = None,
                  covariance: Covariance = "bivariate") -> Tensor:  # [B, 6] -> [B, 3]
    """One step ``(dx, dy, pen_up)`` drawn from the output distribution; ``pen_up`` in ``{0, 1}``."""
    mu_x, mu_y, log_sx, log_sy, rho, pen_logit = _unpack(params, covariance)
    e = torch.randn(*params.shape[:-1], 2, generator=generator, dtype=params.dtype).to(params.device)
    dx = mu_x + log_sx.exp() * e[..., 0]
    dy = mu_y + log_sy.exp() * (rho * e[..., 0] + torch.sqrt(1.0 - rho**2) * e[..., 1])
    pen = torch.bernoulli(torch.sigmoid(pen_logit).cpu(), generator=generator).to(params.device)
    return torch.stack([dx, dy, pen], -1)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


def _check_strokes(x: Tensor) -> None:
    if x.ndim != 3 or x.shape[-1] != 3 or not x.is_floating_point():
        raise ValueError(f"x must be float strokes [B, T, 3] (dx, dy, pen_up), got {x.dtype} {tuple(x.shape)}")


class _Recurrent(nn.Module):
    """A GRU or LSTM cell behind one interface: the state is ``h`` (GRU) or ``(h, c)`` (LSTM)."""

    def __init__(self, kind: Cell, d_in: int, hidden: int) -> None:
        super().__init__()
        if kind not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {kind!r}")
        self.kind, self.hidden = kind, hidden
        self.cell = nn.GRUCell(d_in, hidden) if kind == "gru" else nn.LSTMCell(d_in, hidden)

    def initial(self, B: int, like: Tensor) -> tuple[Tensor, ...]:
        h = torch.zeros(B, self.hidden, dtype=like.dtype, device=like.device)
        return (h,) if self.kind == "gru" else (h, h.clone())

    def forward(self, inp: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:  # [B, D], state -> state
        return (self.cell(inp, state[0]),) if self.kind == "gru" else self.cell(inp, state)


class VRNN(nn.Module):
    """The variational RNN (see the module docstring); ``elbo``/``iwae``/``loss`` per sequence in nats."""

    def __init__(self, hidden: int = 64, z_dim: int = 16, features: int = 64, covariance: Covariance = "bivariate",
                 cell: Cell = "gru") -> None:
        super().__init__()
        self.hidden, self.z_dim, self.covariance = hidden, z_dim, covariance
        self.phi_x = nn.Sequential(_mlp(3, features, features), nn.ReLU())
        self.phi_z = nn.Sequential(nn.Linear(z_dim, features), nn.ReLU())
        self.prior = _mlp(hidden, features, 2 * z_dim)
        self.encoder = _mlp(features + hidden, features, 2 * z_dim)
        self.decoder = _mlp(features + hidden, features, PARAMS)
        self.rnn = _Recurrent(cell, 2 * features, hidden)

    def _terms(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per step ``[B, T]``: ``log p(x_t | z_t, h_{t-1})``, ``KL(q_t || p_t)`` and ``log p(z_t) - log q(z_t)`` at
        the drawn ``z_t ~ q`` (the importance weight's latent part)."""
        _check_strokes(x)
        B, T, _ = x.shape
        state = self.rnn.initial(B, x)
        features = self.phi_x(x)  # [B, T, F]
        log_px, kl, log_ratio = [], [], []
        for t in range(T):
            h = state[0]
            mu_p, logvar_p = self.prior(h).chunk(2, -1)  # [B, Z] each
            mu_q, logvar_q = self.encoder(torch.cat([features[:, t], h], -1)).chunk(2, -1)
            eps = torch.randn(B, self.z_dim, generator=generator, dtype=x.dtype).to(x.device)
            z = mu_q + (0.5 * logvar_q).exp() * eps  # reparameterised z_t ~ q
            phi_z = self.phi_z(z)
            params = self.decoder(torch.cat([phi_z, h], -1))
            log_px.append(stroke_log_prob(params, x[:, t], self.covariance))
            kl.append(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))
            log_ratio.append(gaussian_log_prob(z, mu_p, logvar_p) - gaussian_log_prob(z, mu_q, logvar_q))
            state = self.rnn(torch.cat([features[:, t], phi_z], -1), state)
        return torch.stack(log_px, 1), torch.stack(kl, 1), torch.stack(log_ratio, 1)

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [B, T, 3] -> [B]
        """``sum_t E_q[log p(x_t | .)] - KL(q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1}))``, one ``z`` per step."""
        log_px, kl, _ = self._terms(x, generator)
        return (log_px - kl).sum(1)

    def iwae(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:  # [B, T, 3] -> [B]
        """``log (1/k) sum_i p(x, z^i) / q(z^i | x)`` over ``k`` latent trajectories ``z^i_{1:T}`` drawn from the
        filtering posterior; a lower bound of ``log p(x)`` that rises to it as ``k`` grows (Burda et al. 2016)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        _check_strokes(x)
        log_px, _, log_ratio = self._terms(x.repeat(k, 1, 1), generator)  # [k B, T]
        log_w = (log_px + log_ratio).sum(1).view(k, x.shape[0])
        return log_mean_exp(log_w, dim=0)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [B, T, 3] -> [B]
        """``-elbo``: the negative ELBO per sequence."""
        return -self.elbo(x, generator)

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, T, 3]
        """``z_t ~ p(z_t | h_{t-1})`` (the prior), ``x_t ~ p(x_t | z_t, h_{t-1})``, then ``h_t``."""
        if n < 0 or length < 0:
            raise ValueError(f"n and length must be >= 0, got {n}, {length}")
        like = self.prior[0].weight
        state = self.rnn.initial(n, like)
        xs = []
        for _ in range(length):
            h = state[0]
            mu_p, logvar_p = self.prior(h).chunk(2, -1)
            eps = torch.randn(n, self.z_dim, generator=generator, dtype=like.dtype).to(like.device)
            phi_z = self.phi_z(mu_p + (0.5 * logvar_p).exp() * eps)
            x_t = sample_stroke(self.decoder(torch.cat([phi_z, h], -1)), generator, self.covariance)
            xs.append(x_t)
            state = self.rnn(torch.cat([self.phi_x(x_t), phi_z], -1), state)
        return torch.stack(xs, 1) if xs else torch.zeros(n, 0, 3, dtype=like.dtype, device=like.device)


class StrokeRNN(nn.Module):
    """The deterministic baseline: ``p(x_t | x_<t)`` from the state ``h_{t-1}``; exact ``log_prob`` per sequence."""

    def __init__(self, hidden: int = 64, features: int = 64, covariance: Covariance = "bivariate",
                 cell: Cell = "gru") -> None:
        super().__init__()
        self.hidden, self.covariance = hidden, covariance
        self.phi_x = nn.Sequential(_mlp(3, features, features), nn.ReLU())
        self.decoder = _mlp(hidden, features, PARAMS)
        self.rnn = _Recurrent(cell, features, hidden)

    def log_prob(self, x: Tensor) -> Tensor:  # [B, T, 3] -> [B] nats
        """Exact ``log p(x) = sum_t log p(x_t | x_<t)`` (teacher forcing)."""
        _check_strokes(x)
        B, T, _ = x.shape
        state = self.rnn.initial(B, x)
        features = self.phi_x(x)  # [B, T, F]
        hs = []
        for t in range(T):
            hs.append(state[0])
            state = self.rnn(features[:, t], state)
        params = self.decoder(torch.stack(hs, 1))  # [B, T, 6]
        return stroke_log_prob(params, x, self.covariance).sum(1)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [B, T, 3] -> [B]
        """``-log_prob(x)``."""
        return -self.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, T, 3]
        """``x_t ~ p(x_t | h_{t-1})``, then ``h_t = f(h_{t-1}, phi_x(x_t))``."""
        if n < 0 or length < 0:
            raise ValueError(f"n and length must be >= 0, got {n}, {length}")
        like = self.decoder[0].weight
        state = self.rnn.initial(n, like)
        xs = []
        for _ in range(length):
            x_t = sample_stroke(self.decoder(state[0]), generator, self.covariance)
            xs.append(x_t)
            state = self.rnn(self.phi_x(x_t), state)
        return torch.stack(xs, 1) if xs else torch.zeros(n, 0, 3, dtype=like.dtype, device=like.device)


def _check_common(hidden: int, features: int, covariance: str, cell: str) -> None:
    if hidden < 1 or features < 1:
        raise ValueError(f"hidden and features must be >= 1, got {hidden}, {features}")
    if covariance not in ("diagonal", "bivariate"):
        raise ValueError(f"covariance must be 'diagonal' or 'bivariate', got {covariance!r}")
    if cell not in ("gru", "lstm"):
        raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")


@dataclass
class VRNNConfig:
    """A VRNN on stroke-3 drawings; the defaults train on the procedural drawings in minutes on one thread."""

    hidden: int = 64
    """Size of the recurrent state ``h_t``."""
    z_dim: int = 8
    """Size of the latent ``z_t`` of every step."""
    features: int = 64
    """Width of ``phi_x``, ``phi_z`` and of the hidden layer of the prior, encoder and decoder."""
    covariance: Covariance = "bivariate"
    """Gaussian on ``(dx, dy)``: bivariate (with a correlation) or diagonal."""
    cell: Cell = "gru"
    """The recurrence ``f``: a GRU or an LSTM cell."""

    def __post_init__(self) -> None:
        _check_common(self.hidden, self.features, self.covariance, self.cell)
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {self.z_dim}")

    def build(self) -> VRNN:
        """The model of this config (drawings have no image shape)."""
        return VRNN(self.hidden, self.z_dim, self.features, self.covariance, self.cell)


@dataclass
class StrokeRNNConfig:
    """The RNN baseline; give it the VRNN's ``hidden`` to compare at the same state size."""

    hidden: int = 64
    """Size of the recurrent state ``h_t``."""
    features: int = 64
    """Width of ``phi_x`` and of the decoder's hidden layer."""
    covariance: Covariance = "bivariate"
    """Gaussian on ``(dx, dy)``: bivariate (with a correlation) or diagonal."""
    cell: Cell = "gru"
    """The recurrence ``f``: a GRU or an LSTM cell."""

    def __post_init__(self) -> None:
        _check_common(self.hidden, self.features, self.covariance, self.cell)

    def build(self) -> StrokeRNN:
        """The model of this config."""
        return StrokeRNN(self.hidden, self.features, self.covariance, self.cell)
