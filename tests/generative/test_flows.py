"""The flow layers of notes §8 (generative.models.flows): every layer is inverted exactly, its log-determinant is
that of the autograd Jacobian, log-dets of a composition add, Glow's ActNorm and 1x1 convolution behave as the
paper says, and a 2-D flow's density integrates to one."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from generative.data import toys
from generative.models.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Flatten,
    Flow,
    FlowSequence,
    InvConv1x1,
    LogitTransform,
    MultiScale,
    Scaling,
    Squeeze,
    ToyFlowConfig,
    channel_mask,
    checkerboard_mask,
    mlp,
    soft_clamp,
    squeeze,
    unsqueeze,
    vector_mask,
)
from generative.models.image_flows import conv_net

torch.set_num_threads(1)


def perturbed(flow: Flow, seed: int = 0, scale: float = 0.3) -> Flow:
    """``flow`` in float64 with every parameter moved off its (often identity) initialisation."""
    flow = flow.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def jacobian_log_det(flow: Flow, x: Tensor) -> Tensor:  # x: [1, ...] -> scalar
    """``log|det J|`` of ``flow`` at the single sample ``x`` from the dense autograd Jacobian."""

    def f(flat: Tensor) -> Tensor:
        return flow(flat.view_as(x))[0].flatten()

    jac = torch.autograd.functional.jacobian(f, x.flatten())
    assert jac.shape[0] == jac.shape[1]
    return torch.linalg.slogdet(jac).logabsdet


def image_coupling(mask: Tensor, channels: int, affine: bool) -> Flow:
    spatial = mask.shape[1] == 1
    net = conv_net(channels + spatial, 8, (2 if affine else 1) * channels, 1)
    return AffineCoupling(mask, net, spatial, 1.5) if affine else AdditiveCoupling(mask, net, spatial)


def layers() -> dict[str, tuple[Flow, Tensor]]:
    """Every layer with a small input (float64); image layers on [1, 2, 4, 4], vector layers on [1, 4]."""
    torch.manual_seed(0)
    image = torch.rand(1, 2, 4, 4, dtype=torch.float64) * 2 - 1
    vector = torch.randn(1, 4, dtype=torch.float64)
    return {
        "additive-vector": (AdditiveCoupling(vector_mask(4, 1), mlp(4, (8,), 4), False), vector),
        "additive-checkerboard": (image_coupling(checkerboard_mask(4, 4, 0), 2, False), image),
        "affine-vector": (AffineCoupling(vector_mask(4, 0), mlp(4, (8,), 8), False, 2.0), vector),
        "affine-checkerboard": (image_coupling(checkerboard_mask(4, 4, 1), 2, True), image),
        "affine-channel": (image_coupling(channel_mask(2, 0), 2, True), image),
        "scaling": (Scaling((4,)), vector),
        "squeeze": (Squeeze(), image),
        "flatten": (Flatten((2, 4, 4)), image),
        "actnorm": (ActNorm(2), image),
        "actnorm-vector": (ActNorm(4), vector),
        "invconv": (InvConv1x1(2, torch.Generator().manual_seed(1)), image),
        "invconv-8": (InvConv1x1(8, torch.Generator().manual_seed(2)), squeeze(image)),
        "logit": (LogitTransform(0.05), image.abs()),
        "multiscale": (MultiScale([FlowSequence([Squeeze(), image_coupling(channel_mask(8, 0), 8, True)]),
                                   FlowSequence([image_coupling(checkerboard_mask(2, 2, 0), 4, True)])], (2, 4, 4)),
                       image),
        "toy-realnvp": (ToyFlowConfig(couplings=3, hidden=(8,)).build(2).flow, vector[:, :2]),
    }


@pytest.mark.parametrize("name", list(layers()))
def test_every_layer_inverts_and_its_log_det_is_the_jacobians(name: str) -> None:
    flow, x = layers()[name]
    flow = perturbed(flow)
    x = torch.cat([x, x.flip(0) * 0.5])  # a batch of two different samples
    flow(x)  # ActNorm initialises on this batch; nothing else changes
    y, log_det = flow(x)
    assert log_det.shape == (2,)
    assert torch.allclose(flow.inverse(y), x, atol=1e-10)
    for b in range(2):
        expected = jacobian_log_det(flow, x[b:b + 1])
        assert log_det[b].item() == pytest.approx(expected.item(), abs=1e-8)


def test_nice_coupling_preserves_volume_exactly() -> None:
    flow, x = layers()["additive-checkerboard"]
    flow = perturbed(flow)
    y, log_det = flow(x)
    assert torch.equal(log_det, torch.zeros(1, dtype=torch.float64))
    assert jacobian_log_det(flow, x).item() == pytest.approx(0.0, abs=1e-10)
    assert not torch.allclose(y, x)  # the coupling does move the transformed half
    mask = flow.mask.bool().expand_as(x)
    assert torch.equal(y[mask], x[mask])  # ... and passes the conditioning half through


def test_affine_coupling_is_the_notes_formula() -> None:
    torch.manual_seed(0)
    net = mlp(2, (8,), 4, zero_last=False)
    flow = AffineCoupling(vector_mask(2, 0), net, False, 2.0)  # x_B = x[:, 0] conditions, x_A = x[:, 1] moves
    x = torch.randn(5, 2)
    s_raw, t = net(x * torch.tensor([1.0, 0.0])).chunk(2, dim=1)
    s = soft_clamp(s_raw[:, 1], 2.0)
    y, log_det = flow(x)
    assert torch.allclose(y[:, 1], x[:, 1] * torch.exp(s) + t[:, 1], atol=1e-6)
    assert torch.equal(y[:, 0], x[:, 0])
    assert torch.allclose(log_det, s, atol=1e-6)


def test_log_dets_of_a_composition_add() -> None:
    a, x = layers()["affine-checkerboard"]
    b, _ = layers()["affine-channel"]
    a, b = perturbed(a, 1), perturbed(b, 2)
    both = FlowSequence([a, b])
    ya, la = a(x)
    yb, lb = b(ya)
    y, log_det = both(x)
    assert torch.equal(y, yb)
    assert torch.allclose(log_det, la + lb)
    assert torch.allclose(both.inverse(y), x, atol=1e-10)


def test_masks_and_squeeze() -> None:
    board = checkerboard_mask(4, 4, 0)[0, 0]
    assert board[0, 0] == 1 and board[0, 1] == 0 and board.sum() == 8
    assert torch.equal(checkerboard_mask(4, 4, 1)[0, 0], 1 - board)
    assert channel_mask(4, 0).flatten().tolist() == [1, 1, 0, 0]
    assert vector_mask(4, 1).flatten().tolist() == [0, 1, 0, 1]
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = squeeze(x)
    assert s.shape == (1, 4, 2, 2)
    assert s[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left 2x2 block becomes 4 channels
    assert torch.equal(unsqueeze(s), x)
    with pytest.raises(ValueError, match="even height"):
        squeeze(torch.zeros(1, 1, 3, 4))


def test_actnorm_initialises_from_the_first_batch_and_survives_a_state_dict_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(64, 3, 4, 4, generator=g) * torch.tensor([1.0, 0.5, 4.0]).view(1, 3, 1, 1)
    norm = ActNorm(3)
    assert "initialised" in norm.state_dict() and not bool(norm.initialised)
    y, log_det = norm(x)
    per_channel = y.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(log_det, 16 * norm.log_s.sum().expand(64))
    loaded = ActNorm(3)
    loaded.load_state_dict(norm.state_dict())
    other = torch.randn(8, 3, 4, 4, generator=g)
    assert torch.equal(loaded(other)[0], norm(other)[0])  # no re-initialisation on new data
    assert torch.equal(loaded.bias, norm.bias) and bool(loaded.initialised)


def test_invertible_1x1_conv_lu_log_det_is_slogdet_of_its_weight() -> None:
    conv = perturbed(InvConv1x1(4, torch.Generator().manual_seed(3)), seed=4, scale=0.2)
    w = conv.weight()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    y, log_det = conv(x)
    assert torch.allclose(log_det, 15 * torch.linalg.slogdet(w).logabsdet.expand(2))
    assert torch.allclose(y, torch.nn.functional.conv2d(x, w[:, :, None, None]))
    lower = conv.L * conv.lower_mask + torch.eye(4, dtype=torch.float64)
    assert torch.equal(torch.diagonal(lower), torch.ones(4, dtype=torch.float64))
    fresh = InvConv1x1(4, torch.Generator().manual_seed(3))  # initialised as a rotation: |det W| = 1
    assert torch.linalg.slogdet(fresh.weight().double()).logabsdet.item() == pytest.approx(0.0, abs=1e-5)
    assert torch.equal(fresh.weight(), InvConv1x1(4, torch.Generator().manual_seed(3)).weight())


def test_logit_transform_log_det_closed_form() -> None:
    y = torch.tensor([[0.0, 0.25, 0.5, 1.0]], dtype=torch.float64)
    alpha = 0.05
    z, log_det = LogitTransform(alpha)(y)
    p = alpha + (1 - 2 * alpha) * y
    assert torch.allclose(z, torch.log(p / (1 - p)))
    expected = (math.log(1 - 2 * alpha) - torch.log(p * (1 - p))).sum()
    assert log_det.item() == pytest.approx(expected.item())
    assert z[0, 2].item() == pytest.approx(0.0)


def grid_integral(flow: nn.Module, half_width: float = 6.0, n: int = 400) -> float:
    """The midpoint rule of ``exp(log p)`` over ``[-half_width, half_width]^2``."""
    step = 2 * half_width / n
    axis = -half_width + step * (torch.arange(n, dtype=torch.float64) + 0.5)
    points = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = torch.cat([flow.log_prob(chunk).exp() for chunk in points.split(60_000)])
    return float(density.sum() * step**2)


def test_toy_flow_density_integrates_to_one() -> None:
    torch.manual_seed(0)
    flow = ToyFlowConfig(couplings=4, hidden=(32, 32)).build(2)
    perturbed(flow, seed=5, scale=0.1)
    integral = grid_integral(flow)
    assert abs(integral - 1) < 0.02
    inside = (flow.sample(20_000, torch.Generator().manual_seed(0)).abs() < 6).all(1).double().mean()
    assert integral == pytest.approx(float(inside), abs=0.005)  # the mass in the box is that of the samples
    # briefly trained on the 8 Gaussians: the density has moved far from N(0, I) and still integrates to one
    x = toys.sample("8gaussians", 2000, seed=1).double()
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    start = float(-flow.log_prob(x).detach().mean())
    for _ in range(150):
        batch = x[torch.randint(0, len(x), (256,), generator=g)]
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(-flow.log_prob(x).detach().mean()) < start - 0.3
    assert abs(grid_integral(flow) - 1) < 0.02


def test_toy_flow_samples_invert_its_forward_map() -> None:
    torch.manual_seed(0)
    flow = perturbed(ToyFlowConfig(couplings=3, hidden=(16,)).build(2), seed=2)
    a = flow.sample(50, torch.Generator().manual_seed(7))
    b = flow.sample(50, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (50, 2)
    z, _ = flow.flow(a)
    assert torch.allclose(z, torch.randn(50, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64),
                          atol=1e-9)
    with pytest.raises(ValueError, match=r"x must be \[N, 2\]"):
        flow.log_prob(torch.zeros(3, 3))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="couplings must be >= 1"):
        ToyFlowConfig(couplings=0)
    with pytest.raises(ValueError, match="alpha must be in"):
        LogitTransform(0.5)
    with pytest.raises(ValueError, match="channels must be >= 2"):
        channel_mask(1)


def test_a_short_toy_run_beats_a_fitted_gaussian_and_draws_its_figure(tmp_path) -> None:
    import imageio.v3 as iio

    from generative.tasks.toy_flows import FIGURE, ToyFlowTrainConfig, gaussian_nll, train_toy_flow
    from generative.training import FitConfig

    config = ToyFlowTrainConfig(toy="8gaussians", n_train=4000, n_test=2000, model=ToyFlowConfig(6, (32, 32)),
                                fit=FitConfig(steps=200, lr=3e-3, eval_every=100, progress=False))
    result = train_toy_flow(config, tmp_path / "run")
    # a Gaussian of the ring: variance 2 + 0.01 per axis, NLL log(2 pi) + 1 + log(2.01) = 3.54 nats; the truth: 0.31
    assert result.gaussian_nll == pytest.approx(3.54, abs=0.05)
    assert result.true_nll == pytest.approx(math.log(2 * math.pi * math.e * 0.01) + math.log(8), abs=0.05)
    assert result.test_nll < result.gaussian_nll - 1.5
    assert result.test_nll > result.true_nll - 0.1  # no model beats the true density (up to sampling error)
    assert iio.imread(tmp_path / "run" / FIGURE).ndim == 3
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 3.0]) + 2
    assert gaussian_nll(x, x) == pytest.approx(math.log(2 * math.pi) + 1 + math.log(3.0), abs=0.1)
