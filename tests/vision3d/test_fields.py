import math

import numpy as np
import pytest
import torch

from vision3d.fields import FieldConfig, ImplicitField, as_numpy_sdf, fourier_encoding, gradient


def _points(n: int = 4000, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 1.1 - 0.55


def _init_error(config: FieldConfig, seed: int) -> tuple[float, float, float]:
    """Mean |f - (||x|| - r)|, mean cosine of grad f with x, sign agreement away from the sphere."""
    torch.manual_seed(seed)
    field = ImplicitField(config)
    x = _points().requires_grad_()
    y, g = field.value_and_gradient(x)
    ref = x.norm(dim=1).detach() - config.radius
    y = y[:, 0].detach()
    far = ref.abs() > 0.1
    cos = torch.nn.functional.cosine_similarity(g.detach(), x.detach(), dim=1).mean()
    return float((y - ref).abs().mean()), float(cos), float(((y > 0) == (ref > 0))[far].float().mean())


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_geometric_init_is_close_to_a_sphere_sdf(activation):
    config = FieldConfig(activation=activation, hidden=256, layers=8, skip=(4,), radius=0.3)
    mae, cos, sign = _init_error(config, seed=0)
    assert mae < 0.08  # f ~ ||x|| - r
    assert cos > 0.95  # grad f points away from the centre
    assert sign > 0.95  # inside/outside right away from the surface


def test_geometric_init_error_shrinks_with_width():
    # SAL's theorem: a wide ReLU network at this initialisation tends to ||x|| - r as the width grows.
    def mean_error(hidden: int) -> float:
        return float(
            np.mean(
                [_init_error(FieldConfig(activation="relu", hidden=hidden, layers=4, skip=()), s)[0] for s in range(3)]
            )
        )

    assert mean_error(512) < 0.5 * mean_error(32)


def test_geometric_init_ignores_code_and_fourier_features():
    torch.manual_seed(0)
    field = ImplicitField(FieldConfig(hidden=64, layers=4, skip=(2,), latent_dim=5, fourier_levels=3))
    plain = FieldConfig(hidden=64, layers=4, skip=(2,))
    x = _points(100)
    z1, z2 = torch.randn(1, 5), torch.randn(100, 5)
    torch.testing.assert_close(field(x, z1), field(x, z2))  # the same sphere for every code
    torch.manual_seed(0)
    assert ImplicitField(plain)(x).shape == (100, 1)


def test_code_changes_the_output_when_trained_weights_use_it():
    torch.manual_seed(0)
    field = ImplicitField(FieldConfig(hidden=32, layers=4, skip=(2,), latent_dim=4, geometric_init=False))
    x = _points(50)
    z = torch.randn(4, requires_grad=True)
    out = field(x, z)
    (gz,) = torch.autograd.grad(out.sum(), z)
    assert gz.abs().sum() > 0
    torch.testing.assert_close(field(x, z), field(x, z.detach().expand(50, 4)))  # [L] broadcasts as [N, L]


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    field = ImplicitField(FieldConfig(hidden=32, layers=4, skip=(2,), fourier_levels=2)).double()
    x = _points(20).double().requires_grad_()
    g = gradient(field(x), x)
    eps = 1e-6
    for axis in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[axis] = eps
        with torch.no_grad():
            fd = (field(x + step) - field(x - step))[:, 0] / (2 * eps)
        torch.testing.assert_close(g[:, axis], fd, atol=1e-6, rtol=1e-5)


def test_gradient_of_a_closed_form():
    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    y = (x**2).sum(dim=1, keepdim=True)
    torch.testing.assert_close(gradient(y, x), 2 * x)
    with pytest.raises(ValueError, match="require grad"):
        gradient(y, x.detach())


def test_fourier_encoding_formula():
    x = torch.tensor([[0.1, -0.2, 0.3]])
    enc = fourier_encoding(x, 2)
    assert enc.shape == (1, 15)
    torch.testing.assert_close(enc[0, :3], x[0])
    # layout: sin of (octave 0: x, y, z; octave 1: x, y, z), then cos in the same order
    torch.testing.assert_close(enc[0, 3:6], torch.sin(math.pi * x[0]))
    torch.testing.assert_close(enc[0, 6:9], torch.sin(2 * math.pi * x[0]))
    torch.testing.assert_close(enc[0, 12:15], torch.cos(2 * math.pi * x[0]))
    assert fourier_encoding(x, 0) is x


def test_input_checks():
    field = ImplicitField(FieldConfig(hidden=32, layers=2, skip=(), latent_dim=3))
    with pytest.raises(ValueError, match="x must have shape"):
        field(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="needs a code"):
        field(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="z must have shape"):
        field(torch.zeros(4, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="skip"):
        FieldConfig(layers=4, skip=(4,))
    with pytest.raises(ValueError, match="too narrow"):
        ImplicitField(FieldConfig(hidden=8, layers=4, skip=(2,), fourier_levels=2))


def test_as_numpy_sdf_batches_and_matches_the_module():
    torch.manual_seed(0)
    field = ImplicitField(FieldConfig(hidden=32, layers=3, skip=()))
    points = _points(1000).numpy()
    sdf = as_numpy_sdf(field, "cpu", batch_size=77)
    values = sdf(points)
    assert values.shape == (1000,) and values.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(values, field(torch.from_numpy(points))[:, 0].numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="points must have shape"):
        sdf(points[:, :2])


def test_fourier_encoding_of_no_points_is_empty():
    from vision3d.fields import fourier_encoding

    assert fourier_encoding(torch.zeros(0, 3), 4).shape == (0, 27)
