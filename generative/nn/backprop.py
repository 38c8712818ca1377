"""Backpropagation written by hand, one layer at a time (notes §1.3).

Every layer's ``forward(x)`` keeps in ``self.cache`` what its derivative needs, and ``backward(grad_out)``
turns ``dL/d(output)`` into ``dL/d(input)`` by the chain rule, filling ``.grad`` of its weights on the way.
A ``Sequential`` runs the layers forward and then backward in reverse order (dynamic programming: each
``dL/dh`` is computed once and reused by every weight below it). Nothing here uses autograd; the tests
compare it with autograd and check it with ``torch.autograd.gradcheck`` through ``HandBackprop``, a
``torch.autograd.Function`` whose backward is this one.

The notes' example, one sigmoid unit ``y_hat = sigma(w^T h)`` with ``l = (y - y_hat)^2 / 2``, is
``neuron_gradients``. The notes print ``dL/dw_k = (y - y_hat) sigma'(w^T h) h_k``; the derivative of
``(y - y_hat)^2 / 2`` is ``(y_hat - y) sigma'(w^T h) h_k``, and gradient descent steps *against* it: the
notes' expression (without the minus) is the descent direction, not the gradient.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor


class Layer(ABC):
    """A differentiable step: ``forward`` caches, ``backward`` maps ``dL/d(out)`` to ``dL/d(in)``."""

    cache: Any = None

    def parameters(self) -> list[Tensor]:
        """The weights of the layer (their ``.grad`` is set by ``backward``)."""
        return []

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """The layer's output; keeps in ``cache`` what :meth:`backward` needs."""

    @abstractmethod
    def backward(self, grad_out: Tensor) -> Tensor:
        """``dL/d(in)`` from ``dL/d(out)``, filling the ``.grad`` of the parameters."""

    def _cached(self) -> Any:
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self.cache


class Linear(Layer):
    """``z = x W^T + b``; ``W: [out, in]``, ``b: [out]``, ``x: [B, in]``."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        bound = 1.0 / n_in**0.5  # torch.nn.Linear's default uniform initialisation
        self.W = (2 * torch.rand(n_out, n_in, generator=generator, dtype=dtype) - 1) * bound
        self.b = (2 * torch.rand(n_out, generator=generator, dtype=dtype) - 1) * bound

    def parameters(self) -> list[Tensor]:
        return [self.W, self.b]

    def forward(self, x: Tensor) -> Tensor:  # x: [B, in] -> [B, out]
        if x.ndim != 2 or x.shape[1] != self.W.shape[1]:
            raise ValueError(
                f"x must be [B, {self.W.shape[1]}] for W of shape {tuple(self.W.shape)}, got {tuple(x.shape)}"
            )
        self.cache = x
        return x @ self.W.T + self.b

    def backward(self, grad_out: Tensor) -> Tensor:  # grad_out: [B, out] -> [B, in]
        x = self._cached()
        self.W.grad = grad_out.T @ x  # dL/dW_jk = sum_b dL/dz_bj x_bk
        self.b.grad = grad_out.sum(dim=0)
        return grad_out @ self.W  # dL/dx_bk = sum_j dL/dz_bj W_jk


class Sigmoid(Layer):
    """``sigma(x) = 1 / (1 + exp(-x))``, ``sigma' = sigma (1 - sigma)``."""

    def forward(self, x: Tensor) -> Tensor:
        y = torch.sigmoid(x)
        self.cache = y
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        y = self._cached()
        return grad_out * y * (1 - y)


class Tanh(Layer):
    """``tanh(x)``, ``tanh' = 1 - tanh^2``."""

    def forward(self, x: Tensor) -> Tensor:
        y = torch.tanh(x)
        self.cache = y
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        y = self._cached()
        return grad_out * (1 - y * y)


class ReLU(Layer):
    """``max(0, x)``, derivative ``1{x > 0}`` (0 at 0, as torch)."""

    def forward(self, x: Tensor) -> Tensor:
        mask = x > 0
        self.cache = mask
        return x * mask

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out * self._cached()


ACTIVATIONS: dict[str, type[Layer]] = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


class Sequential(Layer):
    """Layers applied in order; ``backward`` visits them in reverse (the chain rule, notes §1.3)."""

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def caches(self) -> list[Any]:
        """What each layer cached in its last forward (so it can be restored for a later backward)."""
        return [layer.caches() if isinstance(layer, Sequential) else layer.cache for layer in self.layers]

    def restore(self, caches: Sequence[Any]) -> None:
        """Put back caches returned by ``caches``."""
        for layer, cache in zip(self.layers, caches):
            if isinstance(layer, Sequential):
                layer.restore(cache)
            else:
                layer.cache = cache

    def set_parameters(self, params: Sequence[Tensor]) -> None:
        """Use ``params`` (in the order of ``parameters()``) as the weights; they are shared, not copied."""
        mine = self.parameters()
        if len(params) != len(mine) or any(p.shape != q.shape for p, q in zip(params, mine)):
            raise ValueError(
                f"params must have the shapes {[tuple(q.shape) for q in mine]}, got {[tuple(p.shape) for p in params]}"
            )
        it = iter(params)
        for layer in self.layers:
            if isinstance(layer, Sequential):
                layer.set_parameters([next(it) for _ in layer.parameters()])
            elif isinstance(layer, Linear):
                layer.W, layer.b = next(it), next(it)
            elif layer.parameters():
                raise TypeError(f"set_parameters does not know the weights of {type(layer).__name__}")


def mlp(widths: Sequence[int], activation: Literal["sigmoid", "tanh", "relu"] = "tanh",
        out_activation: Literal["sigmoid", "tanh", "relu"] | None = None, generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32) -> Sequential:
    """A hand-differentiated MLP ``widths[0] -> ... -> widths[-1]`` with ``activation`` between the layers."""
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least two positive sizes, got {list(widths)}")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(Linear(n_in, n_out, generator, dtype))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    if out_activation is not None:
        layers.append(ACTIVATIONS[out_activation]())
    return Sequential(*layers)


# --- loss layers -----------------------------------------------------------------------------------------


class MSELoss:
    """``L = sum_i (y_i - y_hat_i)^2 / 2`` (the notes' example); ``dL/dy_hat = y_hat - y``."""

    cache: Any = None

    def forward(self, y_hat: Tensor, y: Tensor) -> Tensor:  # [*], [*] -> []
        if y_hat.shape != y.shape:
            raise ValueError(f"y_hat and y must have the same shape, got {tuple(y_hat.shape)} and {tuple(y.shape)}")
        self.cache = (y_hat, y)
        return 0.5 * (y - y_hat).square().sum()

    def backward(self, grad_out: Tensor | float = 1.0) -> Tensor:  # -> [*] like y_hat
        y_hat, y = self.cache
        return grad_out * (y_hat - y)


class BCELoss:
    """``L = -sum_i y_i log y_hat_i + (1 - y_i) log(1 - y_hat_i)`` of probabilities ``y_hat``;
    ``dL/dy_hat = (y_hat - y) / (y_hat (1 - y_hat))`` (after a sigmoid layer the product is ``y_hat - y``)."""

    cache: Any = None

    def forward(self, y_hat: Tensor, y: Tensor) -> Tensor:  # [*] in (0, 1), [*] -> []
        if y_hat.shape != y.shape:
            raise ValueError(f"y_hat and y must have the same shape, got {tuple(y_hat.shape)} and {tuple(y.shape)}")
        self.cache = (y_hat, y)
        return -(y * torch.log(y_hat) + (1 - y) * torch.log1p(-y_hat)).sum()

    def backward(self, grad_out: Tensor | float = 1.0) -> Tensor:
        y_hat, y = self.cache
        return grad_out * (y_hat - y) / (y_hat * (1 - y_hat))


# --- the notes' single unit ------------------------------------------------------------------------------


def neuron_gradients(w: Tensor, h: Tensor, y: float) -> tuple[Tensor, Tensor]:  # w, h: [K] -> ([K], [K])
    """``(dl/dw, dl/dh)`` of ``l = (y - sigma(w^T h))^2 / 2``: ``(y_hat - y) sigma'(w^T h) h`` and
    ``(y_hat - y) sigma'(w^T h) w`` (notes §1.3, with the sign the notes drop)."""
    if w.shape != h.shape or w.ndim != 1:
        raise ValueError(f"w and h must both be [K], got {tuple(w.shape)} and {tuple(h.shape)}")
    y_hat = torch.sigmoid(w @ h)
    common = (y_hat - y) * y_hat * (1 - y_hat)  # dl/dy_hat * sigma'(w^T h)
    return common * h, common * w


def sgd_step(params: Sequence[Tensor], eta: float) -> None:
    """Gradient descent ``theta <- theta - eta dL/dtheta`` in place, from the ``.grad`` the layers filled."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                raise RuntimeError("sgd_step: a parameter has no .grad; run backward first")
            p -= eta * p.grad


# --- autograd bridge -------------------------------------------------------------------------------------


class HandBackprop(torch.autograd.Function):
    """``net(x)`` with the weights passed as inputs, differentiated by ``net.backward`` (not by autograd):
    ``HandBackprop.apply(net, x, *params)``. Lets ``torch.autograd.gradcheck`` test the hand-written backward."""

    @staticmethod
    def forward(ctx: Any, net: Sequential, x: Tensor, *params: Tensor) -> Tensor:
        net.set_parameters([p.detach() for p in params])
        with torch.no_grad():
            out = net.forward(x.detach())
        ctx.net, ctx.caches, ctx.params = net, net.caches(), [p.detach() for p in params]
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        net: Sequential = ctx.net
        net.set_parameters(ctx.params)
        net.restore(ctx.caches)  # the forward of another call may have overwritten them
        with torch.no_grad():
            grad_x = net.backward(grad_out)
        return (None, grad_x, *[p.grad.clone() for p in net.parameters()])
