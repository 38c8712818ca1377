"""Each loss of notes §1.2 is the negative log-likelihood of its distribution (up to stated constants)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from generative.nn.losses import (
    bce,
    bce_with_logits,
    bernoulli_nll,
    categorical_nll,
    cross_entropy,
    gaussian_nll,
    gaussian_nll_constant,
    gaussian_prior_nll,
    l1,
    laplace_nll,
    laplace_nll_constant,
    map_objective,
    mse,
    ridge_lambda,
    ridge_penalty,
)

D = torch.float64


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


def test_bce_is_the_bernoulli_nll(g):
    y_hat = torch.rand(50, generator=g, dtype=D) * 0.98 + 0.01
    y = torch.randint(0, 2, (50,), generator=g).to(D)
    torch.testing.assert_close(bce(y_hat, y), bernoulli_nll(y_hat, y))
    torch.testing.assert_close(bce(y_hat, y), F.binary_cross_entropy(y_hat, y, reduction="sum"))
    logits = torch.randn(50, generator=g, dtype=D) * 3
    torch.testing.assert_close(bce_with_logits(logits, y), bce(torch.sigmoid(logits), y))
    torch.testing.assert_close(bce_with_logits(logits, y, "mean"), bce_with_logits(logits, y) / 50)
    # minimised at y_hat = y (notes Figure 1.4): the loss grows as y_hat moves away from the label
    p = torch.linspace(0.01, 0.99, 99, dtype=D)
    ones = [float(bce(q[None], torch.ones(1, dtype=D))) for q in p]
    assert all(a > b for a, b in itertools.pairwise(ones))
    assert float(bce_with_logits(torch.tensor([60.0], dtype=D), torch.zeros(1, dtype=D))) == pytest.approx(60.0)


def test_cross_entropy_is_the_categorical_nll(g):
    logits = torch.randn(40, 7, generator=g, dtype=D)
    y = torch.randint(0, 7, (40,), generator=g)
    torch.testing.assert_close(cross_entropy(logits, y), categorical_nll(logits, y))
    torch.testing.assert_close(cross_entropy(logits, y, "mean"), F.cross_entropy(logits, y))
    # with two classes it is BCE of the sigmoid of the logit difference
    two = torch.randn(30, 2, generator=g, dtype=D)
    yy = torch.randint(0, 2, (30,), generator=g)
    torch.testing.assert_close(cross_entropy(two, yy), bce_with_logits(two[:, 1] - two[:, 0], yy.to(D)))
    with pytest.raises(ValueError, match=r"logits must be \[N, K\]"):
        cross_entropy(logits, y[:3])


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_mse_is_the_gaussian_nll_up_to_scale_and_constant(g, sigma):
    f = torch.randn(20, 3, generator=g, dtype=D)
    y = torch.randn(20, 3, generator=g, dtype=D)
    expected = mse(f, y) / (2 * sigma**2) + gaussian_nll_constant(60, sigma)
    torch.testing.assert_close(gaussian_nll(f, y, sigma), expected)
    assert float(mse(f, y)) == pytest.approx(float(((y - f) ** 2).sum()))  # a sum of squares, as the notes


@pytest.mark.parametrize("b", [0.2, 1.0, 3.0])
def test_l1_is_the_laplace_nll_up_to_scale_and_constant(g, b):
    f = torch.randn(15, 4, generator=g, dtype=D)
    y = torch.randn(15, 4, generator=g, dtype=D)
    torch.testing.assert_close(laplace_nll(f, y, b), l1(f, y) / b + laplace_nll_constant(60, b))


def test_the_minimisers_are_the_mean_and_the_median():
    # a constant prediction c: the Gaussian NLL is minimised at the mean, the Laplace NLL at the median
    y = torch.tensor([0.0, 0.1, 0.2, 0.4, 5.0], dtype=D)
    c = torch.linspace(-1, 6, 7001, dtype=D)
    sq = torch.stack([gaussian_nll(ci.expand(5), y, 1.0) for ci in c])
    ab = torch.stack([laplace_nll(ci.expand(5), y, 1.0) for ci in c])
    assert float(c[sq.argmin()]) == pytest.approx(float(y.mean()), abs=1e-3)
    assert float(c[ab.argmin()]) == pytest.approx(float(y.median()), abs=1e-3)


def test_gaussian_prior_is_ridge_and_map_is_ridge_regression(g):
    theta = [torch.randn(3, 4, generator=g, dtype=D), torch.randn(5, generator=g, dtype=D)]
    tau = 0.7
    P = 17
    expected = ridge_penalty(theta, 1 / (2 * tau**2)) + 0.5 * P * math.log(2 * math.pi * tau**2)
    torch.testing.assert_close(gaussian_prior_nll(theta, tau), expected)
    # Bayesian linear regression: the MAP estimate is the ridge solution with lambda = sigma^2 / tau^2
    X = torch.randn(30, 4, generator=g, dtype=D)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=D) + 0.3 * torch.randn(30, generator=g, dtype=D)
    sigma, tau = 0.5, 0.4
    lam = ridge_lambda(sigma, tau)
    ridge = torch.linalg.solve(X.T @ X + lam * torch.eye(4, dtype=D), X.T @ y)
    w = torch.zeros(4, dtype=D, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe", tolerance_grad=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = map_objective(gaussian_nll(X @ w, y, sigma), [w], tau)
        loss.backward()
        return loss

    optimizer.step(closure)
    torch.testing.assert_close(w.detach(), ridge, atol=1e-6, rtol=1e-6)
    # and the MAP objective is (MSE + lambda ||w||^2) / (2 sigma^2) plus a constant
    with torch.no_grad():
        a, b = torch.randn(4, generator=g, dtype=D), torch.randn(4, generator=g, dtype=D)
        map_a = map_objective(gaussian_nll(X @ a, y, sigma), [a], tau)
        map_b = map_objective(gaussian_nll(X @ b, y, sigma), [b], tau)
        ridge_a = (mse(X @ a, y) + ridge_penalty([a], lam)) / (2 * sigma**2)
        ridge_b = (mse(X @ b, y) + ridge_penalty([b], lam)) / (2 * sigma**2)
    torch.testing.assert_close(map_a - map_b, ridge_a - ridge_b)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        mse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        l1(torch.zeros(3), torch.zeros(3), "max")
