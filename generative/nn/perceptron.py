"""The Rosenblatt perceptron and its learning rule (notes §1.1, Figure 1.1; Rosenblatt, 1958).

``y_hat = sigma(theta^T x)`` with the step ``sigma(a) = 1{a > 0}`` and the bias folded into ``theta`` by
appending a constant 1 to every ``x``. Visiting the points in turn, each one changes the weights by

    theta <- theta + eta (y_i - y_hat_i) x_i,      y_i in {0, 1},

which is zero for a correctly classified point, so only mistakes move ``theta``. On linearly separable
data the number of updates is finite (Novikoff, 1962: at most ``(R / gamma)^2`` for ``theta_0 = 0``, with
``R = max ||x_i||`` and ``gamma`` the margin of any unit separator); on XOR (notes Figure 1.2) no
``theta`` classifies all four points, so every epoch makes a mistake.

The notes call the rule "gradient descent with a Hinge loss"; it is the perceptron criterion
``sum_i max(0, -y'_i theta^T x_i)`` with ``y' = 2y - 1 in {-1, +1}`` (no margin 1 as in the hinge
``max(0, 1 - y' theta^T x)``), whose subgradient on a mistake is ``-y'_i x_i = -(y_i - y_hat_i) x_i``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class PerceptronResult(NamedTuple):
    """The learned weights and how learning went."""

    theta: Tensor  # [D + 1] weights, the bias last
    epochs: int  # passes over the data that were run
    converged: bool  # whether the last epoch made no mistake
    mistakes: list[int]  # mistakes (= updates) in each epoch


def _check_data(X: Tensor, y: Tensor) -> None:  # X: [N, D], y: [N]
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [N, D] and y [N], got {tuple(X.shape)} and {tuple(y.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("y must hold the labels 0 and 1 only")


def with_bias(X: Tensor) -> Tensor:  # X: [N, D] -> [N, D + 1]
    """Append the constant feature 1, so the bias is the last weight of ``theta``."""
    if X.ndim != 2:
        raise ValueError(f"X must be [N, D], got {tuple(X.shape)}")
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)


def step(a: Tensor) -> Tensor:  # a: [*] -> [*] in {0, 1}
    """The perceptron's non-linearity ``sigma(a) = 1{a > 0}`` (notes Figure 1.1)."""
    return (a > 0).to(a.dtype)


def predict(theta: Tensor, X: Tensor) -> Tensor:  # theta: [D + 1], X: [N, D] -> [N] in {0, 1}
    """``y_hat = sigma(theta^T [x; 1])`` for every row of ``X``."""
    if theta.shape != (X.shape[-1] + 1,):
        raise ValueError(f"theta must be [D + 1] for X of shape [N, D], got {tuple(theta.shape)} and {tuple(X.shape)}")
    return step(with_bias(X.to(theta.dtype)) @ theta)


def perceptron_update(theta: Tensor, x: Tensor, y: float, eta: float) -> Tensor:  # theta, x: [D + 1] -> [D + 1]
    """One step of the rule ``theta + eta (y - y_hat) x`` for one point ``x`` (bias feature included)."""
    if theta.shape != x.shape or theta.ndim != 1:
        raise ValueError(f"theta and x must both be [D + 1], got {tuple(theta.shape)} and {tuple(x.shape)}")
    y_hat = step(theta @ x)
    return theta + eta * (y - y_hat) * x


def perceptron_criterion(theta: Tensor, X: Tensor, y: Tensor) -> Tensor:  # theta: [D+1], X: [N, D], y: [N] -> []
    """``sum_i max(0, -y'_i theta^T [x_i; 1])`` with ``y' = 2y - 1``: the loss whose subgradient the rule follows."""
    _check_data(X, y)
    return torch.relu(-(2 * y - 1) * (with_bias(X) @ theta)).sum()


def train_perceptron(
    X: Tensor,  # [N, D]
    y: Tensor,  # [N] in {0, 1}
    eta: float = 1.0,
    max_epochs: int = 100,
    theta0: Tensor | None = None,  # [D + 1], zeros by default
    shuffle_seed: int | None = None,
) -> PerceptronResult:
    """Run the perceptron rule over the points in order (or in a seeded random order each epoch) until an
    epoch makes no mistake or ``max_epochs`` have run."""
    _check_data(X, y)
    if eta <= 0 or max_epochs < 1:
        raise ValueError(f"eta must be > 0 and max_epochs >= 1, got {eta} and {max_epochs}")
    Xb = with_bias(X.to(torch.float64))
    theta = torch.zeros(Xb.shape[1], dtype=torch.float64) if theta0 is None else theta0.to(torch.float64).clone()
    if theta.shape != (Xb.shape[1],):
        raise ValueError(f"theta0 must be [D + 1] = [{Xb.shape[1]}], got {tuple(theta.shape)}")
    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    labels = y.to(torch.float64)
    mistakes: list[int] = []
    for _ in range(max_epochs):
        order = range(len(X)) if generator is None else torch.randperm(len(X), generator=generator).tolist()
        count = 0
        for i in order:
            count += int(float(step(theta @ Xb[i])) != float(labels[i]))
            theta = perceptron_update(theta, Xb[i], float(labels[i]), eta)
        mistakes.append(count)
        if count == 0:
            break
    return PerceptronResult(theta, len(mistakes), mistakes[-1] == 0, mistakes)
