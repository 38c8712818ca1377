"""Loss functions as negative log-likelihoods (notes §1.2).

Maximum likelihood ``argmax_theta prod_i p(y_i | x_i, theta)`` is ``argmin_theta -sum_i log p(y_i | x_i, theta)``:
the distribution that the network parameterises decides the loss. Each loss below stands beside the
negative log-likelihood it equals, written with ``torch.distributions``:

* Bernoulli ``Ber(y | y_hat)``: BCE ``-sum y log y_hat + (1 - y) log(1 - y_hat)`` is the NLL exactly;
* categorical ``Cat(y | softmax(a))``: the cross-entropy ``-sum log softmax(a)_y`` is the NLL exactly;
* Gaussian ``N(y | f(x), sigma^2 I)``: the notes' "MSE" ``sum ||y - f(x)||^2`` gives
  ``NLL = MSE / (2 sigma^2) + (nd / 2) log(2 pi sigma^2)``;
* Laplace ``Laplace(y | f(x), b)``: ``L1 = sum ||y - f(x)||_1`` gives ``NLL = L1 / b + nd log(2 b)``;
* Gaussian prior ``N(theta | 0, tau^2 I)``: ``-log p(theta) = ||theta||^2 / (2 tau^2) + (P / 2) log(2 pi tau^2)``,
  the ridge penalty ``lambda ||theta||^2`` up to scale and constant.

(``n d`` is the number of scalar targets, ``P`` the number of parameters.) The additive constants do not
depend on ``theta``, so each loss has the same minimiser as its NLL. With a Gaussian likelihood and a
Gaussian prior the MAP objective ``-log p(D | theta) - log p(theta)`` is
``(MSE + lambda ||theta||^2) / (2 sigma^2)`` plus a constant, with ``lambda = sigma^2 / tau^2`` (``ridge_lambda``).

Each loss takes ``reduction="sum"`` (the notes) or ``"mean"`` (over the targets; what training uses, so the
learning rate does not depend on the batch size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Laplace, Normal

Reduction = Literal["sum", "mean"]


def _same_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


# --- Bernoulli -> binary cross-entropy -------------------------------------------------------------------


def bce(y_hat: Tensor, y: Tensor, reduction: Reduction = "sum") -> Tensor:  # y_hat: [*] in (0, 1), y: [*] -> []
    """Binary cross-entropy ``-sum_i y_i log y_hat_i + (1 - y_i) log(1 - y_hat_i)`` of probabilities ``y_hat``."""
    _same_shape(y_hat, y, ("y_hat", "y"))
    return _reduce(-(y * torch.log(y_hat) + (1 - y) * torch.log1p(-y_hat)), reduction)


def bce_with_logits(logits: Tensor, y: Tensor, reduction: Reduction = "sum") -> Tensor:  # [*], [*] -> []
    """``bce(sigmoid(logits), y)`` evaluated stably: ``softplus(a) - y a`` per element."""
    _same_shape(logits, y, ("logits", "y"))
    return _reduce(F.softplus(logits) - y * logits, reduction)


def bernoulli_nll(y_hat: Tensor, y: Tensor) -> Tensor:  # [*], [*] -> []
    """``-sum_i log Ber(y_i | y_hat_i)``; equals ``bce(y_hat, y)``."""
    _same_shape(y_hat, y, ("y_hat", "y"))
    return -Bernoulli(probs=y_hat).log_prob(y).sum()


# --- categorical -> cross-entropy ------------------------------------------------------------------------


def cross_entropy(logits: Tensor, y: Tensor, reduction: Reduction = "sum") -> Tensor:  # logits: [N, K], y: [N] -> []
    """``-sum_i log softmax(a_i)[y_i]``, the multi-class form of BCE (softmax and a categorical)."""
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [N, K] and y [N], got {tuple(logits.shape)} and {tuple(y.shape)}")
    log_p = torch.log_softmax(logits, dim=1)
    return _reduce(-log_p.gather(1, y.long()[:, None])[:, 0], reduction)


def categorical_nll(logits: Tensor, y: Tensor) -> Tensor:  # logits: [N, K], y: [N] -> []
    """``-sum_i log Cat(y_i | softmax(a_i))``; equals ``cross_entropy(logits, y)``."""
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [N, K] and y [N], got {tuple(logits.shape)} and {tuple(y.shape)}")
    return -Categorical(logits=logits).log_prob(y).sum()


# --- Gaussian -> squared error; Laplace -> absolute error ------------------------------------------------


def mse(f: Tensor, y: Tensor, reduction: Reduction = "sum") -> Tensor:  # f: [*], y: [*] -> []
    """``sum_i ||y_i - f(x_i)||_2^2`` (the notes' "mean-squared error" is this sum of squares)."""
    _same_shape(f, y, ("f", "y"))
    return _reduce((y - f).square(), reduction)


def gaussian_nll(f: Tensor, y: Tensor, sigma: float) -> Tensor:  # f: [*], y: [*] -> []
    """``-sum log N(y | f(x), sigma^2 I) = mse(f, y) / (2 sigma^2) + gaussian_nll_constant(y.numel(), sigma)``."""
    _same_shape(f, y, ("f", "y"))
    return -Normal(f, sigma).log_prob(y).sum()


def gaussian_nll_constant(count: int, sigma: float) -> float:
    """``(count / 2) log(2 pi sigma^2)``: what the Gaussian NLL adds to ``mse / (2 sigma^2)`` for ``count`` targets."""
    return 0.5 * count * math.log(2 * math.pi * sigma**2)


def l1(f: Tensor, y: Tensor, reduction: Reduction = "sum") -> Tensor:  # f: [*], y: [*] -> []
    """``sum_i ||y_i - f(x_i)||_1``."""
    _same_shape(f, y, ("f", "y"))
    return _reduce((y - f).abs(), reduction)


def laplace_nll(f: Tensor, y: Tensor, b: float) -> Tensor:  # f: [*], y: [*] -> []
    """``-sum log Laplace(y | f(x), b) = l1(f, y) / b + laplace_nll_constant(y.numel(), b)``."""
    _same_shape(f, y, ("f", "y"))
    return -Laplace(f, b).log_prob(y).sum()


def laplace_nll_constant(count: int, b: float) -> float:
    """``count log(2 b)``: what the Laplace NLL adds to ``l1 / b`` for ``count`` targets."""
    return count * math.log(2 * b)


# --- Gaussian prior -> ridge (MAP) -----------------------------------------------------------------------


def ridge_penalty(params: Iterable[Tensor], lam: float) -> Tensor:  # tensors of any shape -> []
    """``lambda ||theta||_2^2`` summed over every tensor in ``params``."""
    return lam * sum((p.square().sum() for p in params), torch.zeros(()))


def gaussian_prior_nll(params: Iterable[Tensor], tau: float) -> Tensor:  # tensors of any shape -> []
    """``-log N(theta | 0, tau^2 I) = ||theta||^2 / (2 tau^2) + (P / 2) log(2 pi tau^2)``."""
    return -sum((Normal(0.0, tau).log_prob(p).sum() for p in params), torch.zeros(()))


def ridge_lambda(sigma: float, tau: float) -> float:
    """``lambda = sigma^2 / tau^2``: the ridge weight of the MAP objective with noise ``sigma`` and prior ``tau``."""
    return sigma**2 / tau**2


def map_objective(nll: Tensor, params: Iterable[Tensor], tau: float) -> Tensor:  # nll: [] -> []
    """``-log p(D | theta) - log p(theta)`` with the prior ``N(0, tau^2 I)`` (notes §1.2, MAP).

    The notes' second line multiplies by ``p(theta)`` twice, ``p(theta) prod_i p(y_i | theta) p(theta)``;
    the posterior is ``p(theta | D) ∝ p(theta) prod_i p(y_i | theta)`` with one prior factor, as here.
    """
    if nll.ndim != 0:
        raise ValueError(f"nll must be a scalar [], got {tuple(nll.shape)}")
    return nll + gaussian_prior_nll(params, tau)
