"""Gradient clipping (notes §4.3): the definition, the global norm, and torch's clip_grad_norm_."""

import math

import pytest
import torch
from torch import nn

from generative.nn.clipping import clip_gradients, clipped, global_norm


def _model_with_grads(scale: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * scale
    return model


def test_clipped_is_the_definition():
    g = torch.tensor([3.0, 4.0])  # ||g|| = 5
    assert torch.equal(clipped(g, 5.0), g)  # at the threshold: unchanged
    assert torch.equal(clipped(g, 10.0), g)
    out = clipped(g, 1.0)
    assert torch.allclose(out, torch.tensor([0.6, 0.8]))
    assert math.isclose(float(out.norm()), 1.0, rel_tol=1e-7)
    # direction kept
    assert float(torch.dot(out, g) / (out.norm() * g.norm())) == pytest.approx(1.0)


def test_clip_gradients_uses_the_global_norm_over_all_parameters():
    model = _model_with_grads(10.0)
    before = [p.grad.clone() for p in model.parameters()]
    flat = torch.cat([g.flatten() for g in before])
    norm = clip_gradients(model.parameters(), 1.0)
    assert norm == pytest.approx(float(flat.norm()), rel=1e-6)
    after = torch.cat([p.grad.flatten() for p in model.parameters()])
    # one common factor k/||g|| for every parameter, equal to clipping the concatenated vector
    assert torch.allclose(after, clipped(flat, 1.0), atol=1e-7)
    assert float(after.norm()) == pytest.approx(1.0, rel=1e-6)


def test_clip_gradients_leaves_small_gradients_untouched():
    model = _model_with_grads(1e-3)
    before = [p.grad.clone() for p in model.parameters()]
    norm = clip_gradients(model.parameters(), 1.0)
    assert norm < 1.0
    for b, p in zip(before, model.parameters()):
        assert torch.equal(b, p.grad)


def test_agrees_with_torch_clip_grad_norm_up_to_its_eps():
    ours, theirs = _model_with_grads(10.0), _model_with_grads(10.0)
    n_ours = clip_gradients(ours.parameters(), 0.5)
    n_theirs = float(nn.utils.clip_grad_norm_(theirs.parameters(), 0.5))
    assert n_ours == pytest.approx(n_theirs, rel=1e-6)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=0)


def test_torch_eps_shows_at_small_norms():
    """torch scales by k / (||g|| + 1e-6); the notes (and we) by k / ||g||. In float64, with a norm of
    about 1e-3, the two differ by the factor ||g|| / (||g|| + 1e-6) and only ours lands exactly on k."""
    ours, theirs = _model_with_grads(1e-4).double(), _model_with_grads(1e-4).double()
    k = 1e-4
    norm = clip_gradients(ours.parameters(), k)
    nn.utils.clip_grad_norm_(theirs.parameters(), k)
    assert 1e-4 < norm < 1e-2
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(b.grad, a.grad * norm / (norm + 1e-6), rtol=1e-12, atol=0)
    assert float(global_norm([p.grad for p in ours.parameters()])) == pytest.approx(k, rel=1e-12)
    assert float(global_norm([p.grad for p in theirs.parameters()])) < k * (1 - 1e-5)


def test_parameters_without_grad_are_skipped_and_bad_k_raises():
    model = _model_with_grads(10.0)
    frozen = nn.Parameter(torch.ones(4))
    norm = clip_gradients([*model.parameters(), frozen], 2.0)
    assert norm > 2.0 and frozen.grad is None
    assert clip_gradients([frozen], 1.0) == 0.0
    with pytest.raises(ValueError, match="k"):
        clip_gradients(model.parameters(), 0.0)
    with pytest.raises(ValueError, match="k"):
        clipped(torch.ones(2), -1.0)


def test_clipping_bounds_the_step_of_sgd():
    """The step length is gamma * min(||g||, k), as the notes' update rule says."""
    model = _model_with_grads(10.0)
    params = list(model.parameters())
    before = torch.cat([p.detach().flatten().clone() for p in params])
    clip_gradients(params, 0.3)
    torch.optim.SGD(params, lr=0.1).step()
    after = torch.cat([p.detach().flatten() for p in params])
    assert float((after - before).norm()) == pytest.approx(0.1 * 0.3, rel=1e-5)
