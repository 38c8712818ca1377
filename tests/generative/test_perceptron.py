"""The perceptron rule (notes §1.1): finite convergence on separable data (Novikoff's bound), never on XOR."""

import pytest
import torch

from generative.nn.perceptron import (
    perceptron_criterion,
    perceptron_update,
    predict,
    step,
    train_perceptron,
    with_bias,
)


def _separable(n=200, margin=0.2, seed=0):
    """Points on either side of the line w* . x + b* = 0, none within ``margin`` of it."""
    g = torch.Generator().manual_seed(seed)
    w_star, b_star = torch.tensor([2.0, -1.0], dtype=torch.float64), 0.3
    X = 4 * torch.rand(4 * n, 2, generator=g, dtype=torch.float64) - 2
    distance = (X @ w_star + b_star) / w_star.norm()
    keep = distance.abs() > margin
    X = X[keep][:n]
    y = (X @ w_star + b_star > 0).to(torch.float64)
    return X, y, torch.cat([w_star, torch.tensor([b_star], dtype=torch.float64)])


def test_converges_on_separable_data_within_novikoffs_bound():
    X, y, theta_star = _separable()
    result = train_perceptron(X, y, eta=1.0, max_epochs=1000)
    assert result.converged and result.mistakes[-1] == 0 and result.epochs == len(result.mistakes)
    assert bool((predict(result.theta, X) == y).all())
    # Novikoff: updates <= (R / gamma)^2 with R = max ||[x; 1]|| and gamma the margin of the unit separator
    Xb = with_bias(X)
    unit = theta_star / theta_star.norm()
    gamma = float(((2 * y - 1) * (Xb @ unit)).min())
    R = float(Xb.norm(dim=1).max())
    assert gamma > 0
    assert sum(result.mistakes) <= (R / gamma) ** 2


def test_learning_rate_does_not_change_the_mistakes_from_zero():
    # from theta_0 = 0 every theta is eta times the eta = 1 one, and step(eta a) = step(a)
    X, y, _ = _separable(seed=1)
    a, b = train_perceptron(X, y, eta=1.0), train_perceptron(X, y, eta=0.01)
    assert a.mistakes == b.mistakes
    torch.testing.assert_close(b.theta, 0.01 * a.theta)


def test_never_solves_xor():
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    for seed in (None, 0, 1):
        result = train_perceptron(X, y, max_epochs=200, shuffle_seed=seed)
        assert not result.converged and result.epochs == 200
        assert min(result.mistakes) >= 1
        assert int((predict(result.theta, X) != y).sum()) >= 1


def test_update_is_a_subgradient_step_on_the_perceptron_criterion():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        theta = torch.randn(3, generator=g, dtype=torch.float64)
        x = torch.randn(1, 2, generator=g, dtype=torch.float64)
        y = torch.randint(0, 2, (1,), generator=g).to(torch.float64)
        xb = with_bias(x)[0]
        t = theta.clone().requires_grad_(True)
        perceptron_criterion(t, x, y).backward()
        eta = 0.3
        expected = theta - eta * t.grad  # zero gradient when correct, -y' x when wrong
        torch.testing.assert_close(perceptron_update(theta, xb, float(y), eta), expected)


def test_step_and_shapes():
    assert step(torch.tensor([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]  # 1{a > 0}
    with pytest.raises(ValueError, match="theta"):
        predict(torch.zeros(2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="labels 0 and 1"):
        train_perceptron(torch.zeros(3, 2), torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        train_perceptron(torch.zeros(3, 2), torch.zeros(4))
