"""The Elman RNN, backpropagation through time, vanishing/exploding gradients, the leaky unit (notes §4.1-4.2).

``h_t = tanh(W_h h_{t-1} + W_x x_t + b_h)`` and ``y_hat_t = W_y h_t + b_y`` (Elman, 1990). The notes
write no biases; we allow them (set them to zero to get the notes' exact form). Vectors are columns in
the formulas; the code holds a batch as rows, ``h @ W_h.T``.

* :func:`elman_forward` / :func:`elman_backward`: the forward pass caching every state and BPTT by
  hand, accumulating ``dW_h, dW_x, db_h, dW_y, db_y`` over the steps and carrying ``dL/dh_t`` backwards;
  :class:`ElmanFunction` wraps them as a ``torch.autograd.Function`` (checked with ``gradcheck``).
* :class:`ElmanRNN`: the same model on ``torch.nn.RNN`` (tanh), the fast path for training; its
  ``forward_by_hand`` runs the hand-written version on the same weights.
* :func:`state_jacobians`, :func:`state_jacobian_norms`, :func:`gradient_norm_experiment`,
  :func:`gradient_norm_figure`: ``||dh_t/dh_k||`` against ``t - k`` and the bound ``eta^(t-k)``.
* :func:`leaky_step` / :class:`LeakyCell`: ``h_t = alpha h_{t-1} + (1 - alpha) h_hat_t``.

Slips in the notes' §4.1 argument, corrected here:

1. For column vectors ``dh_i/dh_{i-1} = diag(tanh'(a_i)) W_h`` and ``dh_t/dh_k = J_t J_{t-1} ... J_{k+1}``
   (newest on the left). The notes' ``W_h^T diag(...)`` is the transpose of that Jacobian (the layout
   in which gradients are pushed backwards); its product, taken oldest-left, is the transposed
   Jacobian, so the norms are the same.
2. ``||W_h|| = lambda_1`` holds for the largest SINGULAR value (the spectral norm). The largest
   eigenvalue's modulus is only a lower bound on it (``[[0, 2], [0, 0]]`` has eigenvalues 0 and norm 2).
   The vanishing bound therefore needs ``sigma_1(W_h) < 1/gamma``, with ``eta = gamma sigma_1``; the step
   ``||diag(.) W_h|| <= ||diag(.)|| ||W_h||`` is submultiplicativity of the norm, not the triangle inequality.
3. ``eta^(t-k)`` with ``eta = gamma sigma_1 > 1`` is still an UPPER bound, not a lower one: a large
   ``sigma_1`` is necessary for exploding gradients, not sufficient (Pascanu, Mikolov and Bengio, 2013).
   Saturated units (``tanh' ~ 0``) make the gradient vanish even then; :func:`gradient_norm_experiment`
   shows both outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn


class ElmanCache(NamedTuple):
    """What the forward pass keeps for BPTT."""

    x: Tensor  # [B, T, D]
    h0: Tensor  # [B, H]
    h: Tensor  # [B, T, H]: h_1 .. h_T


class ElmanGrads(NamedTuple):
    """Gradients of the loss with respect to every input of :func:`elman_forward`, and ``dL/dh_t``."""

    x: Tensor  # [B, T, D]
    h0: Tensor  # [B, H]
    W_h: Tensor  # [H, H]
    W_x: Tensor  # [H, D]
    b_h: Tensor  # [H]
    W_y: Tensor  # [O, H]
    b_y: Tensor  # [O]
    dh: Tensor  # [B, T, H]: the total dL/dh_t, through y_hat_t and through h_{t+1}


def _check_elman(x: Tensor, h0: Tensor, W_h: Tensor, W_x: Tensor, b_h: Tensor, W_y: Tensor, b_y: Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"x must be [B, T, D], got shape {tuple(x.shape)}")
    hidden = W_h.shape[0]
    if W_h.shape != (hidden, hidden):
        raise ValueError(f"W_h must be square [H, H], got shape {tuple(W_h.shape)}")
    if W_x.shape != (hidden, x.shape[2]):
        raise ValueError(f"W_x must be [H, D] = {(hidden, x.shape[2])}, got shape {tuple(W_x.shape)}")
    if h0.shape != (x.shape[0], hidden):
        raise ValueError(f"h0 must be [B, H] = {(x.shape[0], hidden)}, got shape {tuple(h0.shape)}")
    if b_h.shape != (hidden,):
        raise ValueError(f"b_h must be [H] = {(hidden,)}, got shape {tuple(b_h.shape)}")
    if W_y.ndim != 2 or W_y.shape[1] != hidden or b_y.shape != (W_y.shape[0],):
        raise ValueError(
            f"W_y must be [O, H] with H = {hidden} and b_y [O], got {tuple(W_y.shape)} and {tuple(b_y.shape)}"
        )


def elman_step(h_prev: Tensor, x_t: Tensor, W_h: Tensor, W_x: Tensor, b_h: Tensor | None = None) -> Tensor:
    """``h_t = tanh(W_h h_{t-1} + W_x x_t + b_h)`` (notes §4.1); ``h_prev: [B, H]``, ``x_t: [B, D]`` -> ``[B, H]``."""
    a = h_prev @ W_h.T + x_t @ W_x.T
    return torch.tanh(a if b_h is None else a + b_h)


def elman_forward(
    x: Tensor,  # [B, T, D]
    h0: Tensor,  # [B, H]
    W_h: Tensor,  # [H, H]
    W_x: Tensor,  # [H, D]
    b_h: Tensor,  # [H]
    W_y: Tensor,  # [O, H]
    b_y: Tensor,  # [O]
) -> tuple[Tensor, ElmanCache]:  # y_hat [B, T, O], cache (states h [B, T, H])
    """Unroll the Elman RNN over ``T`` steps: every state ``h_t`` and output ``y_hat_t = W_y h_t + b_y``."""
    _check_elman(x, h0, W_h, W_x, b_h, W_y, b_y)
    states = []
    h = h0
    for t in range(x.shape[1]):
        h = elman_step(h, x[:, t], W_h, W_x, b_h)
        states.append(h)
    hs = torch.stack(states, dim=1) if states else x.new_zeros(x.shape[0], 0, W_h.shape[0])
    return hs @ W_y.T + b_y, ElmanCache(x, h0, hs)


def elman_backward(
    cache: ElmanCache,
    W_h: Tensor,  # [H, H]
    W_x: Tensor,  # [H, D]
    W_y: Tensor,  # [O, H]
    dy: Tensor,  # [B, T, O]: dL/dy_hat_t (zeros where a step has no loss)
    dh_extra: Tensor | None = None,  # [B, T, H]: dL/dh_t from elsewhere (e.g. a loss on the states)
) -> ElmanGrads:
    """Backpropagation through time by hand (notes §4.1). Going from ``t = T`` down to 1:
    ``dh_t = W_y^T dy_t + dh_extra_t + W_h^T da_{t+1}`` (the state feeds the output and the next step),
    ``da_t = dh_t * (1 - h_t^2)`` (tanh' from the cached state), and each step adds its immediate
    derivatives ``da_t h_{t-1}^T`` to ``dW_h``, ``da_t x_t^T`` to ``dW_x``, ``da_t`` to ``db_h``;
    ``dW_y = sum_t dy_t h_t^T``. Summing the immediate derivatives over ``k`` is the notes' sum over
    ``k`` of ``dl/dh_t dh_t/dh_k dh_k/dW``."""
    x, h0, hs = cache
    if dy.shape[:2] != hs.shape[:2] or dy.shape[2] != W_y.shape[0]:
        raise ValueError(f"dy must be [B, T, O] = {(*hs.shape[:2], W_y.shape[0])}, got shape {tuple(dy.shape)}")
    if dh_extra is not None and dh_extra.shape != hs.shape:
        raise ValueError(f"dh_extra must have the states' shape {tuple(hs.shape)}, got {tuple(dh_extra.shape)}")
    steps = hs.shape[1]
    dW_h, dW_x = torch.zeros_like(W_h), torch.zeros_like(W_x)
    db_h = hs.new_zeros(W_h.shape[0])
    dx = torch.zeros_like(x)
    dh_all = torch.zeros_like(hs)
    carry = torch.zeros_like(h0)  # W_h^T da_{t+1}: what h_t receives from the next step
    for t in reversed(range(steps)):
        dh = dy[:, t] @ W_y + carry
        if dh_extra is not None:
            dh = dh + dh_extra[:, t]
        dh_all[:, t] = dh
        da = dh * (1.0 - hs[:, t] ** 2)
        h_prev = hs[:, t - 1] if t > 0 else h0
        dW_h += da.T @ h_prev
        dW_x += da.T @ x[:, t]
        db_h += da.sum(0)
        dx[:, t] = da @ W_x
        carry = da @ W_h
    dW_y = torch.einsum("bto,bth->oh", dy, hs)
    db_y = dy.sum(dim=(0, 1))
    return ElmanGrads(dx, carry, dW_h, dW_x, db_h, dW_y, db_y, dh_all)


class ElmanFunction(torch.autograd.Function):
    """``(x, h0, W_h, W_x, b_h, W_y, b_y) -> (y_hat [B, T, O], h [B, T, H])`` with the hand-written BPTT as backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h0: Tensor, W_h: Tensor, W_x: Tensor, b_h: Tensor, W_y: Tensor,
                b_y: Tensor) -> tuple[Tensor, Tensor]:
        y_hat, cache = elman_forward(x, h0, W_h, W_x, b_h, W_y, b_y)
        ctx.save_for_backward(x, h0, cache.h, W_h, W_x, W_y)
        return y_hat, cache.h

    @staticmethod
    def backward(ctx: Any, dy: Tensor, dh: Tensor) -> tuple[Tensor, ...]:
        x, h0, hs, W_h, W_x, W_y = ctx.saved_tensors
        g = elman_backward(ElmanCache(x, h0, hs), W_h, W_x, W_y, dy, dh)
        return g.x, g.h0, g.W_h, g.W_x, g.b_h, g.W_y, g.b_y


def elman_rnn(x: Tensor, h0: Tensor, W_h: Tensor, W_x: Tensor, b_h: Tensor, W_y: Tensor,
              b_y: Tensor) -> tuple[Tensor, Tensor]:  # -> y_hat [B, T, O], h [B, T, H]
    """The Elman RNN with hand-written BPTT under autograd (:class:`ElmanFunction`)."""
    _check_elman(x, h0, W_h, W_x, b_h, W_y, b_y)
    return ElmanFunction.apply(x, h0, W_h, W_x, b_h, W_y, b_y)


class ElmanRNN(nn.Module):
    """Elman RNN on ``torch.nn.RNN`` (tanh), the fast path; ``[B, T, D] -> [B, T, O]``.

    ``nn.RNN`` has two biases ``b_ih + b_hh``; their sum is the notes' (optional) ``b_h``.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)

    def weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(W_h, W_x, b_h, W_y, b_y)`` in the notes' names."""
        r = self.rnn
        return r.weight_hh_l0, r.weight_ih_l0, r.bias_ih_l0 + r.bias_hh_l0, self.readout.weight, self.readout.bias

    def _h0(self, x: Tensor, h0: Tensor | None) -> Tensor:
        if x.ndim != 3 or x.shape[2] != self.rnn.input_size:
            raise ValueError(f"x must be [B, T, {self.rnn.input_size}], got shape {tuple(x.shape)}")
        return x.new_zeros(x.shape[0], self.rnn.hidden_size) if h0 is None else h0

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:  # x: [B, T, D], h0: [B, H] -> [B, T, O]
        h0 = self._h0(x, h0)
        hs, _ = self.rnn(x, h0.unsqueeze(0))
        return self.readout(hs)

    def forward_by_hand(self, x: Tensor, h0: Tensor | None = None) -> Tensor:  # [B, T, D] -> [B, T, O]
        """The same outputs from :func:`elman_rnn` (hand-written forward and BPTT)."""
        y_hat, _ = elman_rnn(x, self._h0(x, h0), *self.weights())
        return y_hat


# --- vanishing and exploding gradients -------------------------------------------------------------


def state_jacobians(
    x: Tensor,  # [T, D]: one sequence
    h0: Tensor,  # [H]
    W_h: Tensor,  # [H, H]
    W_x: Tensor,  # [H, D]
    b_h: Tensor | None = None,  # [H]
) -> Tensor:  # [T, H, H]: J_t = dh_t/dh_{t-1}, t = 1..T
    """Per-step Jacobians ``J_t = diag(tanh'(a_t)) W_h = diag(1 - h_t^2) W_h`` (column vectors; the
    notes' ``W_h^T diag(...)`` is its transpose)."""
    if x.ndim != 2 or h0.ndim != 1:
        raise ValueError(f"x must be [T, D] and h0 [H], got shapes {tuple(x.shape)} and {tuple(h0.shape)}")
    h = h0.unsqueeze(0)
    jacobians = []
    for t in range(x.shape[0]):
        h = elman_step(h, x[t : t + 1], W_h, W_x, b_h)
        jacobians.append((1.0 - h[0] ** 2).unsqueeze(1) * W_h)
    return torch.stack(jacobians) if jacobians else W_h.new_zeros(0, *W_h.shape)


def state_jacobian_norms(
    x: Tensor,  # [T, D]
    h0: Tensor,  # [H]
    W_h: Tensor,  # [H, H]
    W_x: Tensor,  # [H, D]
    b_h: Tensor | None = None,  # [H]
    k: int = 0,
) -> Tensor:  # [T - k + 1]: ||dh_t/dh_k||_2 for t = k..T
    """Spectral norms of ``dh_t/dh_k = J_t ... J_{k+1}`` against ``t - k = 0, 1, ..`` (the first is
    ``||I|| = 1``); ``h_0`` is the given ``h0``."""
    jacobians = state_jacobians(x, h0, W_h, W_x, b_h)
    if not 0 <= k <= len(jacobians):
        raise ValueError(f"k must lie in [0, T] = [0, {len(jacobians)}], got {k}")
    product = torch.eye(W_h.shape[0], dtype=W_h.dtype, device=W_h.device)
    norms = [torch.linalg.matrix_norm(product, ord=2)]
    for J in jacobians[k:]:
        product = J @ product
        norms.append(torch.linalg.matrix_norm(product, ord=2))
    return torch.stack(norms)


def with_spectral_norm(W: Tensor, sigma: float) -> Tensor:  # [H, H] -> [H, H]
    """``W`` scaled so that its largest singular value is ``sigma``."""
    return W * (sigma / torch.linalg.matrix_norm(W, ord=2))


@dataclass
class GradientNormExperiment:
    """Measured ``||dh_t/dh_k||`` for several ``sigma_1(W_h)``, with the bound ``(gamma sigma_1)^(t-k)``."""

    distance: np.ndarray
    """``t - k = 0..T`` (``k = 0``), shape [T + 1]."""
    sigmas: list[float]
    """Largest singular value of ``W_h`` in each run."""
    spectral_radii: list[float]
    """Largest eigenvalue modulus of ``W_h`` (at most ``sigma_1``)."""
    input_scales: list[float]
    """Standard deviation of the inputs (0: the state stays at the fixed point 0, where tanh' = 1)."""
    norms: list[np.ndarray] = field(default_factory=list)
    """Measured norms, one array [T + 1] per run."""
    bounds: list[np.ndarray] = field(default_factory=list)
    """``eta^(t-k)`` with ``eta = gamma sigma_1``, ``gamma = 1`` for tanh."""


def gradient_norm_experiment(
    hidden: int = 32,
    T: int = 60,
    sigmas: tuple[float, ...] = (0.5, 0.9, 1.5, 3.0, 3.0),
    input_scales: tuple[float, ...] = (1.0, 1.0, 0.0, 0.0, 3.0),
    seed: int = 0,
) -> GradientNormExperiment:
    """For each ``(sigma_1, input scale)`` draw a Gaussian ``W_h`` rescaled to ``sigma_1`` and inputs
    of that scale, and measure ``||dh_t/dh_0||`` for ``t = 0..T``. With ``sigma_1 < 1`` the norms
    vanish below ``sigma_1^t``. With ``sigma_1 > 1`` and the state held at the fixed point 0 (input 0,
    tanh' = 1) the norms behave like ``||W_h^t||``, whose rate is the spectral radius ``rho(W_h)``, not
    ``sigma_1``: they vanish for ``sigma_1 = 1.5`` (``rho < 1``) and explode for ``sigma_1 = 3``; with
    the same ``W_h`` and large inputs, tanh saturates and they vanish again."""
    if len(sigmas) != len(input_scales):
        raise ValueError(
            f"sigmas and input_scales must have the same length, got {len(sigmas)} and {len(input_scales)}"
        )
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64) / math.sqrt(hidden)
    W_x = torch.randn(hidden, 1, generator=generator, dtype=torch.float64)
    x = torch.randn(T, 1, generator=generator, dtype=torch.float64)
    h0 = torch.zeros(hidden, dtype=torch.float64)
    result = GradientNormExperiment(np.arange(T + 1), list(sigmas), [], list(input_scales))
    for sigma, scale in zip(sigmas, input_scales):
        W_h = with_spectral_norm(W, sigma)
        result.spectral_radii.append(float(torch.linalg.eigvals(W_h).abs().max()))
        result.norms.append(state_jacobian_norms(x * scale, h0, W_h, W_x).numpy())
        result.bounds.append(sigma ** result.distance.astype(float))
    return result


def gradient_norm_figure(result: GradientNormExperiment) -> Figure:
    """``||dh_t/dh_k||`` (log scale) against ``t - k``, each run with its bound ``eta^(t-k)`` dashed."""
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    colours = [f"C{i}" for i in range(len(result.norms))]
    for colour, sigma, rho, scale, norms, bound in zip(
        colours, result.sigmas, result.spectral_radii, result.input_scales, result.norms, result.bounds
    ):
        label = f"$\\sigma_1$={sigma:g}, $\\rho$={rho:.2f}, input std {scale:g}"
        ax.semilogy(result.distance, np.maximum(norms, 1e-300), color=colour, label=label)
        ax.semilogy(result.distance, bound, color=colour, linestyle="--", linewidth=0.8)
    ax.set_xlabel("$t - k$")
    ax.set_ylabel(r"$\|\partial h_t / \partial h_k\|_2$")
    ax.set_title(r"Elman RNN: measured (solid) and bound $(\gamma\sigma_1)^{t-k}$ (dashed)")
    ax.set_ylim(1e-24, 1e16)
    ax.legend(fontsize=8)
    return figure


# --- the leaky unit (notes §4.2) -------------------------------------------------------------------


def leaky_step(h_prev: Tensor, x_t: Tensor, W_h: Tensor, W_x: Tensor, b_h: Tensor | None, alpha: float) -> Tensor:
    """``h_t = alpha h_{t-1} + (1 - alpha) h_hat_t`` with ``h_hat_t = tanh(W_h h_{t-1} + W_x x_t + b_h)``;
    ``h_prev: [B, H]``, ``x_t: [B, D]`` -> ``[B, H]``. Its Jacobian ``alpha I + (1 - alpha) diag(tanh') W_h``
    has every singular value in ``[alpha - (1 - alpha) sigma_1, alpha + (1 - alpha) sigma_1]`` (Weyl), so
    ``||dh_t/dh_k v|| >= (alpha - (1 - alpha) sigma_1)^(t-k) ||v||``: the gradient decays no faster than that."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * h_prev + (1.0 - alpha) * elman_step(h_prev, x_t, W_h, W_x, b_h)


class LeakyCell(nn.Module):
    """The leaky unit of notes §4.2 with a fixed ``alpha``; ``forward([B, T, D], h0 [B, H]) -> [B, T, H]``."""

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha = alpha
        self.W_h = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.W_x = nn.Parameter(torch.empty(hidden_size, input_size))
        self.b_h = nn.Parameter(torch.zeros(hidden_size))
        nn.init.orthogonal_(self.W_h)
        nn.init.xavier_uniform_(self.W_x)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        if x.ndim != 3 or x.shape[2] != self.W_x.shape[1]:
            raise ValueError(f"x must be [B, T, {self.W_x.shape[1]}], got shape {tuple(x.shape)}")
        h = x.new_zeros(x.shape[0], self.W_h.shape[0]) if h0 is None else h0
        states = []
        for t in range(x.shape[1]):
            h = leaky_step(h, x[:, t], self.W_h, self.W_x, self.b_h, self.alpha)
            states.append(h)
        return torch.stack(states, dim=1)
