"""Hand-written backpropagation (notes §1.3) equals autograd and passes gradcheck in float64."""

import pytest
import torch

from generative.nn.backprop import (
    BCELoss,
    HandBackprop,
    Linear,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    mlp,
    neuron_gradients,
    sgd_step,
)

D = torch.float64


def _autograd_reference(net: Sequential, x, loss_fn):
    """The same network with autograd: a copy of every weight that requires grad."""
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    h, it = x, iter(params)
    for layer in net.layers:
        if isinstance(layer, Linear):
            W, b = next(it), next(it)
            h = h @ W.T + b
        elif isinstance(layer, Sigmoid):
            h = torch.sigmoid(h)
        elif isinstance(layer, Tanh):
            h = torch.tanh(h)
        elif isinstance(layer, ReLU):
            h = torch.relu(h)
    loss = loss_fn(h)
    x_grad = torch.autograd.grad(loss, [x, *params])
    return loss.detach(), x_grad[0], x_grad[1:]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("loss_kind", ["mse", "bce"])
def test_hand_backprop_equals_autograd(activation, loss_kind):
    g = torch.Generator().manual_seed(0)
    net = mlp([5, 7, 6, 3], activation, out_activation="sigmoid", generator=g, dtype=D)
    x = torch.randn(11, 5, generator=g, dtype=D, requires_grad=True)
    if loss_kind == "mse":
        y = torch.rand(11, 3, generator=g, dtype=D)
    else:
        y = torch.randint(0, 2, (11, 3), generator=g).to(D)
    loss_layer = MSELoss() if loss_kind == "mse" else BCELoss()
    loss = loss_layer.forward(net.forward(x.detach()), y)
    grad_x = net.backward(loss_layer.backward())
    if loss_kind == "mse":
        ref_loss, ref_x, ref_params = _autograd_reference(net, x, lambda h: 0.5 * ((y - h) ** 2).sum())
    else:
        ref_loss, ref_x, ref_params = _autograd_reference(
            net, x, lambda h: torch.nn.functional.binary_cross_entropy(h, y, reduction="sum"))
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad_x, ref_x)
    for p, ref in zip(net.parameters(), ref_params):
        torch.testing.assert_close(p.grad, ref)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_gradcheck_through_the_hand_written_backward(activation):
    g = torch.Generator().manual_seed(1)
    net = mlp([4, 5, 3], activation, generator=g, dtype=D)
    x = torch.randn(6, 4, generator=g, dtype=D, requires_grad=True)
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    assert torch.autograd.gradcheck(lambda x, *ps: HandBackprop.apply(net, x, *ps), (x, *params))


def test_gradcheck_catches_a_wrong_backward():
    # a layer whose backward forgets the derivative of tanh: gradcheck must reject it
    class WrongTanh(Tanh):
        def backward(self, grad_out):
            return grad_out

    g = torch.Generator().manual_seed(2)
    net = Sequential(Linear(3, 4, g, D), WrongTanh(), Linear(4, 2, g, D))
    x = torch.randn(5, 3, generator=g, dtype=D, requires_grad=True)
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    assert not torch.autograd.gradcheck(
        lambda x, *ps: HandBackprop.apply(net, x, *ps), (x, *params), raise_exception=False)


def test_the_notes_single_unit_example():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, generator=g, dtype=D, requires_grad=True)
    h = torch.randn(6, generator=g, dtype=D, requires_grad=True)
    y = 1.0  # y_hat < y always
    loss = 0.5 * (y - torch.sigmoid(w @ h)) ** 2
    ref_w, ref_h = torch.autograd.grad(loss, [w, h])
    dw, dh = neuron_gradients(w.detach(), h.detach(), y)
    torch.testing.assert_close(dw, ref_w)
    torch.testing.assert_close(dh, ref_h)
    # y_hat < y: the gradient points where y_hat decreases, so descent (minus it) raises y_hat,
    # by increasing w_k where h_k > 0 (the notes' intuition, with the sign)
    assert bool((torch.sign(-dw) == torch.sign(h.detach())).all())
    assert bool((torch.sign(-dh) == torch.sign(w.detach())).all())


def test_gradient_descent_with_hand_gradients_learns_xor():
    g = torch.Generator().manual_seed(4)
    net = mlp([2, 8, 1], "tanh", out_activation="sigmoid", generator=g, dtype=D)
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=D)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=D)
    loss_layer = BCELoss()
    losses = []
    for _ in range(2000):
        losses.append(float(loss_layer.forward(net.forward(X), y)))
        net.backward(loss_layer.backward())
        sgd_step(net.parameters(), 0.5)
    assert losses[-1] < 0.05 * losses[0]
    assert bool(((net.forward(X) > 0.5).to(D) == y).all())


def test_errors():
    layer = Linear(3, 2)
    with pytest.raises(ValueError, match=r"x must be \[B, 3\]"):
        layer.forward(torch.zeros(4, 5))
    with pytest.raises(RuntimeError, match="before forward"):
        Sigmoid().backward(torch.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        MSELoss().forward(torch.zeros(3), torch.zeros(4))
