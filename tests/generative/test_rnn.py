"""Elman RNN (notes §4.1): the recurrence, hand-written BPTT against autograd and gradcheck, nn.RNN as
the fast path, the state Jacobians and their norms against the bound, and the leaky unit (§4.2)."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch.autograd.functional import jacobian

from generative.nn.rnn import (
    ElmanRNN,
    LeakyCell,
    elman_backward,
    elman_forward,
    elman_rnn,
    elman_step,
    gradient_norm_experiment,
    gradient_norm_figure,
    leaky_step,
    state_jacobian_norms,
    state_jacobians,
    with_spectral_norm,
)

D64 = torch.float64


def _weights(B=3, T=5, D=2, H=4, O=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=D64)
    return r(B, T, D), r(B, H) * 0.5, r(H, H) * 0.5, r(H, D), r(H) * 0.1, r(O, H), r(O)


def test_forward_is_the_notes_recurrence_for_column_vectors():
    x, h0, W_h, W_x, b_h, W_y, b_y = _weights()
    y_hat, cache = elman_forward(x, h0, W_h, W_x, b_h, W_y, b_y)
    for b in range(x.shape[0]):
        h = h0[b].unsqueeze(1)  # a column
        for t in range(x.shape[1]):
            h = torch.tanh(W_h @ h + W_x @ x[b, t].unsqueeze(1) + b_h.unsqueeze(1))
            assert torch.allclose(cache.h[b, t], h[:, 0])
            assert torch.allclose(y_hat[b, t], (W_y @ h)[:, 0] + b_y)


def test_hand_bptt_equals_autograd():
    inputs = [t.requires_grad_() for t in _weights(T=7)]
    _, _, W_h, W_x, _, W_y, _ = inputs
    y_hat, cache = elman_forward(*inputs)
    g = torch.Generator().manual_seed(1)
    dy = torch.randn(y_hat.shape, generator=g, dtype=D64)  # L = sum_t <dy_t, y_hat_t>: a loss at every step
    dh = torch.randn(cache.h.shape, generator=g, dtype=D64)
    loss = (dy * y_hat).sum() + (dh * cache.h).sum()
    expected = torch.autograd.grad(loss, inputs)
    ours = elman_backward(cache, W_h.detach(), W_x.detach(), W_y.detach(), dy, dh)
    for name, a, b in zip(["x", "h0", "W_h", "W_x", "b_h", "W_y", "b_y"], ours[:7], expected):
        assert torch.allclose(a, b, atol=1e-12), name


def test_per_step_dh_is_the_total_derivative_of_the_loss():
    """ours.dh[:, t] = dL/dh_t through every later step; check against autograd on a many-to-one loss."""
    x, h0, W_h, W_x, b_h, W_y, b_y = _weights(T=6)
    y_hat, cache = elman_forward(x, h0, W_h, W_x, b_h, W_y, b_y)
    dy = torch.zeros_like(y_hat)
    dy[:, -1] = 1.0  # loss = sum of the last outputs only
    ours = elman_backward(cache, W_h, W_x, W_y, dy)
    for t in range(6):
        h_t = cache.h[:, t].clone().requires_grad_()
        h = h_t
        for s in range(t + 1, 6):
            h = elman_step(h, x[:, s], W_h, W_x, b_h)
        (grad,) = torch.autograd.grad((h @ W_y.T + b_y).sum(), h_t)
        assert torch.allclose(ours.dh[:, t], grad, atol=1e-12)


def test_gradcheck_through_the_autograd_function():
    inputs = tuple(t.requires_grad_() for t in _weights(B=2, T=4, D=2, H=3, O=2))
    assert torch.autograd.gradcheck(lambda *a: elman_rnn(*a), inputs, eps=1e-6, atol=1e-7)


def test_nn_rnn_fast_path_equals_the_hand_version():
    torch.manual_seed(0)
    model = ElmanRNN(3, 8, 2).double()
    x = torch.randn(4, 10, 3, dtype=D64)
    fast = model(x)
    hand = model.forward_by_hand(x)
    assert torch.allclose(fast, hand, atol=1e-12)
    grads_fast = torch.autograd.grad(fast[:, -1].pow(2).sum(), list(model.parameters()))
    grads_hand = torch.autograd.grad(hand[:, -1].pow(2).sum(), list(model.parameters()))
    for a, b in zip(grads_fast, grads_hand):
        assert torch.allclose(a, b, atol=1e-10)


def test_state_jacobians_are_diag_tanh_prime_times_W_h_and_the_notes_form_is_its_transpose():
    x, h0, W_h, W_x, b_h, _, _ = _weights(B=1, T=6, H=4)
    x, h0 = x[0], h0[0]
    J = state_jacobians(x, h0, W_h, W_x, b_h)
    h = h0
    for t in range(6):
        auto = jacobian(lambda v, t=t: elman_step(v.unsqueeze(0), x[t : t + 1], W_h, W_x, b_h)[0], h)
        assert torch.allclose(J[t], auto, atol=1e-12)
        a = W_h @ h + W_x @ x[t] + b_h
        notes = W_h.T @ torch.diag(1 - torch.tanh(a) ** 2)  # the notes' factor
        assert torch.allclose(notes, auto.T, atol=1e-12)
        assert not torch.allclose(notes, auto, atol=1e-3)
        h = elman_step(h.unsqueeze(0), x[t : t + 1], W_h, W_x, b_h)[0]

    # dh_t/dh_k = J_t ... J_{k+1} (newest left); the notes' product, oldest left, is its transpose
    def unroll(v, k=1, t=5):
        for s in range(k, t):
            v = elman_step(v.unsqueeze(0), x[s : s + 1], W_h, W_x, b_h)[0]
        return v

    h1 = elman_step(h0.unsqueeze(0), x[:1], W_h, W_x, b_h)[0]
    auto = jacobian(unroll, h1)  # dh_5/dh_1
    assert torch.allclose(J[4] @ J[3] @ J[2] @ J[1], auto, atol=1e-12)
    assert torch.allclose(J[1].T @ J[2].T @ J[3].T @ J[4].T, auto.T, atol=1e-12)
    norms = state_jacobian_norms(x, h0, W_h, W_x, b_h, k=1)
    assert norms[0] == pytest.approx(1.0)
    assert float(norms[4]) == pytest.approx(float(torch.linalg.matrix_norm(auto, ord=2)), rel=1e-10)


def test_largest_singular_value_not_eigenvalue_is_the_spectral_norm():
    W = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=D64)
    assert float(torch.linalg.eigvals(W).abs().max()) == 0.0
    assert float(torch.linalg.matrix_norm(W, ord=2)) == pytest.approx(2.0)
    W_h = with_spectral_norm(torch.randn(5, 5, dtype=D64), 0.7)
    assert float(torch.linalg.svdvals(W_h)[0]) == pytest.approx(0.7)


def test_norms_stay_below_the_bound_and_vanish_or_explode_as_stated():
    r = gradient_norm_experiment(hidden=32, T=60, seed=0)
    for sigma, norms, bound in zip(r.sigmas, r.norms, r.bounds):
        assert np.all(norms <= bound * (1 + 1e-9)), sigma  # ||prod J|| <= (gamma sigma_1)^(t-k), gamma = 1
        assert np.allclose(bound, sigma ** np.arange(61))
    by_run = dict(zip(zip(r.sigmas, r.input_scales), r.norms))
    assert by_run[(0.5, 1.0)][-1] < 0.5**60  # vanishing, strictly below the bound
    assert by_run[(0.9, 1.0)][-1] < 1e-10
    # sigma_1 > 1 is not enough: with spectral radius < 1 the gradient still vanishes
    assert r.spectral_radii[2] < 1 < r.sigmas[2] and by_run[(1.5, 0.0)][-1] < 1e-2
    # exploding is possible: state at 0, tanh' = 1, rate ~ rho(W_h) > 1
    assert r.spectral_radii[3] > 1 and by_run[(3.0, 0.0)][-1] > 1e10
    rate = (by_run[(3.0, 0.0)][-1] / by_run[(3.0, 0.0)][40]) ** (1 / 20)
    assert rate == pytest.approx(r.spectral_radii[3], rel=0.05)
    # ... but not guaranteed: the same W_h with saturating inputs vanishes (Pascanu et al., 2013)
    assert by_run[(3.0, 3.0)][-1] < 1e-6


def test_gradient_norm_figure_is_an_oo_figure_with_log_axis():
    figure = gradient_norm_figure(gradient_norm_experiment(hidden=8, T=10))
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.get_lines()) == 2 * 5  # measured and bound per run


def test_leaky_unit_keeps_alpha_to_the_distance_when_h_hat_ignores_h():
    """With W_h = 0, h_hat does not depend on h_{t-1}: dh_t/dh_k = alpha^(t-k) I exactly."""
    alpha = 0.8
    cell = LeakyCell(2, 3, alpha=alpha).double()
    with torch.no_grad():
        cell.W_h.zero_()
    x = torch.randn(1, 12, 2, dtype=D64)

    def h_last(h0):
        return cell(x, h0.unsqueeze(0))[0, -1]

    J = jacobian(h_last, torch.zeros(3, dtype=D64))
    assert torch.allclose(J, alpha**12 * torch.eye(3, dtype=D64), atol=1e-15)


def test_leaky_unit_gradient_decays_no_faster_than_the_derived_bound():
    """sigma_min(dh_t/dh_k) >= (alpha - (1 - alpha) sigma_1)^(t-k); the Elman RNN with the same W_h
    falls below sigma_1^(t-k), much faster."""
    torch.manual_seed(0)
    alpha, sigma, T = 0.9, 0.5, 30
    W_h = with_spectral_norm(torch.randn(6, 6, dtype=D64), sigma)
    W_x, b_h = torch.randn(6, 2, dtype=D64), torch.zeros(6, dtype=D64)
    x = torch.randn(T, 2, dtype=D64)
    h0 = torch.zeros(6, dtype=D64)

    def unroll_leaky(h):
        for t in range(T):
            h = leaky_step(h.unsqueeze(0), x[t : t + 1], W_h, W_x, b_h, alpha)[0]
        return h

    s = torch.linalg.svdvals(jacobian(unroll_leaky, h0))
    lower, upper = (alpha - (1 - alpha) * sigma) ** T, (alpha + (1 - alpha) * sigma) ** T
    assert lower <= float(s[-1]) and float(s[0]) <= upper
    elman = float(state_jacobian_norms(x, h0, W_h, W_x, b_h)[-1])
    assert elman <= sigma**T < 1e-3 * lower


def test_shape_errors_name_the_argument():
    x, h0, W_h, W_x, b_h, W_y, b_y = _weights()
    with pytest.raises(ValueError, match="W_h must be square"):
        elman_forward(x, h0, W_h[:, :3], W_x, b_h, W_y, b_y)
    with pytest.raises(ValueError, match="h0 must be"):
        elman_forward(x, h0[:1], W_h, W_x, b_h, W_y, b_y)
    with pytest.raises(ValueError, match="x must be"):
        elman_forward(x[0], h0, W_h, W_x, b_h, W_y, b_y)
    with pytest.raises(ValueError, match="x must be"):
        ElmanRNN(3, 4, 1)(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="alpha"):
        LeakyCell(2, 3, alpha=1.5)
    with pytest.raises(ValueError, match="k must"):
        state_jacobian_norms(x[0], h0[0], W_h, W_x, b_h, k=9)
    assert math.isfinite(float(state_jacobian_norms(x[0], h0[0], W_h, W_x, b_h)[-1]))
