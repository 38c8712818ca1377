"""Multi-layer perceptrons, XOR and the universal approximation theorem (notes §1.1, §1.4, §1.5).

``y_hat = sigma(W_k sigma(W_{k-1} ... sigma(W_1 x)))`` (biases included); ``MLP`` leaves the last layer
linear so a loss can apply its own link (sigmoid for BCE, softmax for cross-entropy). Hidden layers
solve XOR, which no perceptron can (notes Figure 1.2): ``train_xor``.

Universal approximation (Hornik et al., 1989; notes Theorem 1.1): for a bounded, non-constant, continuous
``sigma``, sums ``f(x) = sum_{i=1}^n v_i sigma(w_i x + b_i)`` come uniformly close to any continuous ``g`` on
``[0, 1]`` as ``n`` grows. ``universal_approximation`` fits such a sum for several widths ``n`` and
measures ``max_x |f(x) - g(x)|`` on a dense grid; ``universal_approximation_figure`` plots it. The theorem
says such weights exist, not that training finds them: the staircase construction (fixed steps, least-
squares ``v``) shows the error falling about like ``1/n`` for a Lipschitz target; training every weight
from there lowers it further at small ``n`` and, at large ``n``, stops where the optimiser does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

Activation = Literal["relu", "tanh", "sigmoid", "gelu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}

Target = Literal["sin", "bump", "kink"]
TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "sin": lambda x: torch.sin(2 * math.pi * x),
    "bump": lambda x: torch.exp(-(((x - 0.5) / 0.1) ** 2)),
    "kink": lambda x: (x - 0.3).abs(),  # continuous, not differentiable at 0.3
}
"""Continuous targets ``g`` on ``[0, 1]`` for the universal approximation experiment."""


class MLP(nn.Module):
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ``activation`` between them (not after the last)."""

    def __init__(self, widths: Sequence[int], activation: Activation = "relu") -> None:
        super().__init__()
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least two positive sizes, got {list(widths)}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        self.widths = tuple(widths)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, widths[0]] or [B, C, H, W] (flattened) -> [B, widths[-1]]
        x = x.flatten(1)
        if x.shape[1] != self.widths[0]:
            raise ValueError(f"x must have {self.widths[0]} features per row, got {tuple(x.shape)}")
        return self.net(x)


# --- XOR -------------------------------------------------------------------------------------------------

XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([0.0, 1.0, 1.0, 0.0])


class XORResult(NamedTuple):
    """An MLP trained on XOR."""

    model: MLP
    losses: list[float]  # BCE after every step
    probabilities: Tensor  # [4] sigmoid outputs on XOR_X
    accuracy: float  # fraction of the 4 points classified right at threshold 0.5


def train_xor(hidden: int = 8, activation: Activation = "tanh", steps: int = 1000, lr: float = 0.05,
              seed: int = 0) -> XORResult:
    """Fit ``sigmoid(MLP([2, hidden, 1]))`` to the four XOR points with Adam on the full-batch BCE."""
    if hidden < 1 or steps < 1 or lr <= 0:
        raise ValueError(f"hidden and steps must be >= 1 and lr > 0, got {hidden}, {steps}, {lr}")
    torch.manual_seed(seed)
    model = MLP([2, hidden, 1], activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(model(XOR_X)[:, 0], XOR_Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        p = torch.sigmoid(model(XOR_X)[:, 0])
    return XORResult(model, losses, p, float(((p > 0.5).float() == XOR_Y).float().mean()))


# --- universal approximation -----------------------------------------------------------------------------


class ShallowNet(nn.Module):
    """``f(x) = sum_{i=1}^n v_i sigma(w_i x + b_i)`` on scalars (notes Theorem 1.1, no output bias).

    Initialised as the staircase of the constructive proofs: unit 0 is centred far left of ``[0, 1]``, so
    it is ~1 there and acts as the constant; units ``1 .. n-1`` are smooth steps ``sigma(w (x - c_i))``
    centred on an even grid ``c_i`` of ``[0, 1]``, as steep as the grid is fine (``w = n + 4``); ``v = 0``.
    """

    def __init__(self, n: int, activation: Literal["sigmoid", "tanh"] = "sigmoid") -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        c = torch.cat([torch.tensor([-1.0]), (torch.arange(n - 1) + 0.5) / max(n - 1, 1)]).to(torch.float64)
        w = torch.full((n,), n + 4.0, dtype=torch.float64)
        self.w = nn.Parameter(w)  # [n]
        self.b = nn.Parameter(-w * c)  # [n]
        self.v = nn.Parameter(torch.zeros(n, dtype=torch.float64))  # [n]
        self.sigma = torch.sigmoid if activation == "sigmoid" else torch.tanh

    def features(self, x: Tensor) -> Tensor:  # x: [N] -> [N, n]
        """``sigma(w_i x + b_i)`` for every unit."""
        return self.sigma(x[:, None] * self.w + self.b)

    def forward(self, x: Tensor) -> Tensor:  # x: [N] -> [N]
        return self.features(x) @ self.v

    def solve_v(self, x: Tensor, y: Tensor) -> None:  # x, y: [N]
        """Set the output weights to the least-squares solution (the problem is linear in ``v``)."""
        with torch.no_grad():
            self.v.copy_(torch.linalg.lstsq(self.features(x), y[:, None], driver="gelsd").solution[:, 0])


class ApproximationResult(NamedTuple):
    """Fits of ``sum_i v_i sigma(w_i x + b_i)`` to ``g`` for several widths."""

    widths: list[int]
    errors: list[float]  # max_x |f_n(x) - g(x)| of the trained network, per width
    staircase_errors: list[float]  # the same for the staircase with least-squares v, before training
    x: np.ndarray  # [G] evaluation grid on [0, 1]
    g: np.ndarray  # [G] target on the grid
    fits: np.ndarray  # [len(widths), G] trained f_n on the grid
    target: str


def train_points(n: int) -> Tensor:  # -> [max(512, 8n)]
    """Midpoints of an even grid of ``[0, 1]``, at least 8 per unit so every step is seen."""
    count = max(512, 8 * n)
    return (torch.arange(count, dtype=torch.float64) + 0.5) / count


def fit_shallow(n: int, g: Callable[[Tensor], Tensor], iterations: int = 200) -> tuple[ShallowNet, ShallowNet]:
    """Fit a width-``n`` ``ShallowNet`` to ``g`` on ``train_points(n)``: least squares for ``v`` on the
    staircase, then every weight by ``iterations`` of L-BFGS on the squared error. Returns the staircase
    and the trained network (deterministic: no random numbers are drawn)."""
    x = train_points(n)
    y = g(x)
    staircase = ShallowNet(n)
    staircase.solve_v(x, y)
    net = ShallowNet(n)
    net.load_state_dict(staircase.state_dict())
    if iterations > 0:
        optimizer = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=iterations, history_size=50,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = (net(x) - y).square().mean()
            loss.backward()
            return loss

        optimizer.step(closure)
    return staircase, net


def universal_approximation(target: Target = "sin", widths: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                            iterations: int = 200, grid: int = 2001) -> ApproximationResult:
    """Fit ``sum_{i=1}^n v_i sigma(w_i x + b_i)`` to the target ``g`` for each width ``n`` (``fit_shallow``) and
    report the max-abs error on a ``grid``-point evaluation grid of ``[0, 1]`` (it includes the end points,
    which the training grid does not)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive, got {list(widths)}")
    g = TARGETS[target]
    x = torch.linspace(0, 1, grid, dtype=torch.float64)
    y = g(x)
    fits, errors, staircase_errors = [], [], []
    for n in widths:
        staircase, net = fit_shallow(n, g, iterations)
        with torch.no_grad():
            f = net(x)
            staircase_errors.append(float((staircase(x) - y).abs().max()))
        fits.append(f.numpy())
        errors.append(float((f - y).abs().max()))
    return ApproximationResult(list(widths), errors, staircase_errors, x.numpy(), y.numpy(), np.stack(fits), target)


def universal_approximation_figure(result: ApproximationResult) -> Figure:
    """Left: max-abs error against width (log-log). Right: the target and the fits."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_err, ax_fit = fig.subplots(1, 2)
    from envs.io.figures import PALETTE

    ax_err.loglog(result.widths, result.staircase_errors, "s--", color=PALETTE.reference,
                  label="staircase, least-squares v")
    ax_err.loglog(result.widths, result.errors, "o-", color=PALETTE.learned, label="trained (L-BFGS)")
    ax_err.legend(fontsize=8)
    ax_err.set_xlabel("hidden units n")
    ax_err.set_ylabel(r"$\max_x |f_n(x) - g(x)|$")
    ax_err.set_title("uniform error against width")
    ax_err.grid(True, which="both", alpha=0.3)
    ax_fit.plot(result.x, result.g, "k-", lw=3, alpha=0.4, label="target g")
    for n, f in zip(result.widths, result.fits):
        ax_fit.plot(result.x, f, lw=1, label=f"n = {n}")
    ax_fit.set_xlabel("x")
    ax_fit.set_title(rf"$\sum_i v_i \sigma(w_i x + b_i)$ fitted to {result.target}")
    ax_fit.legend(fontsize=7)
    return fig
