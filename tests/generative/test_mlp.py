"""MLPs (notes §1.1): XOR, which no perceptron solves, and universal approximation (§1.5)."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from generative.nn.mlp import (
    MLP,
    XOR_X,
    XOR_Y,
    ShallowNet,
    train_xor,
    universal_approximation,
    universal_approximation_figure,
)


def test_mlp_layers_and_shapes():
    model = MLP([64, 32, 16, 10], "tanh")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 10)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.modules()) == 2  # none after the last layer
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)  # images are flattened
    with pytest.raises(ValueError, match="64 features"):
        model(torch.zeros(5, 63))
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 3], "swish")


def test_without_nonlinearity_an_mlp_is_affine():
    # notes §1.4: stacking linear layers gives one affine map; the hidden layers add nothing
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Linear(8, 1))
    A = torch.cat([XOR_X, torch.ones(4, 1)], dim=1)
    out = linear(XOR_X).detach()[:, 0]
    coef = torch.linalg.lstsq(A, out[:, None]).solution
    torch.testing.assert_close(A @ coef[:, 0], out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_mlp_solves_xor(seed):
    result = train_xor(seed=seed)
    assert result.accuracy == 1.0
    assert result.losses[-1] < 0.01
    assert bool(((result.probabilities > 0.5).float() == XOR_Y).all())


def test_xor_is_seeded():
    a, b = train_xor(steps=50, seed=3), train_xor(steps=50, seed=3)
    assert a.losses == b.losses


def test_universal_approximation_error_falls_with_width():
    result = universal_approximation("kink", widths=(1, 2, 4, 8, 16, 32, 64))
    staircase = np.array(result.staircase_errors)
    errors = np.array(result.errors)
    # the construction: strictly better with every doubling, and about like 1/n for this Lipschitz target
    assert bool((np.diff(staircase) < 0).all())
    assert staircase[-1] < staircase[2] / 8 and staircase[-1] < 0.01
    # training every weight: far better than one unit and as good as the construction at the largest width
    assert errors[-1] < 0.05 * errors[0]
    assert errors[-1] <= staircase[-1] * 1.01
    assert result.fits.shape == (7, 2001)
    smooth = universal_approximation("sin", widths=(1, 4, 64))
    assert smooth.errors[-1] < 0.01 and smooth.errors[0] > 0.5


def test_shallow_net_is_the_theorem_form():
    net = ShallowNet(5)
    with torch.no_grad():
        net.v.copy_(torch.arange(5.0, dtype=torch.float64))
    x = torch.linspace(0, 1, 7, dtype=torch.float64)
    expected = sum(net.v[i] * torch.sigmoid(net.w[i] * x + net.b[i]) for i in range(5))
    torch.testing.assert_close(net(x), expected)


def test_figure():
    fig = universal_approximation_figure(universal_approximation("bump", widths=(1, 4), iterations=5))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
