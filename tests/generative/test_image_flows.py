"""NICE, RealNVP and Glow as image densities of the grey digits (generative.models.image_flows): the whole models
invert and their log-determinants are the autograd Jacobian's, the dequantised bound has its ``- D log L``,
``log_prob`` is deterministic, samples are seeded grey levels, a short run of the density task lowers the NLL,
and (slow) RealNVP and Glow reach the 2.2 bits/dim target."""

from __future__ import annotations

import math

import pytest
import torch

from generative.commands import density_model
from generative.models.base import log_mean_exp
from generative.models.image_flows import (
    EVAL_SEED,
    FlowImageDensity,
    GlowConfig,
    NICEConfig,
    RealNVPConfig,
    dequantise,
)
from generative.tasks.density import held_out_nll, load_density, train_density
from generative.training import FitConfig

torch.set_num_threads(1)

TINY = {
    "nice": NICEConfig(couplings=4, hidden=(16,)),
    "realnvp": RealNVPConfig(scales=2, width=8, blocks=1),
    "glow": GlowConfig(L=2, K=2, width=8, blocks=1),
}
SHAPE = (1, 4, 4)
LEVELS = 17


def tiny_model(name: str, seed: int = 0) -> FlowImageDensity:
    """A tiny model in float64 with ActNorm initialised on a batch and every parameter moved off its init."""
    torch.manual_seed(seed)
    model = TINY[name].build(SHAPE, LEVELS).double()
    g = torch.Generator().manual_seed(seed)
    model.loss(torch.randint(0, LEVELS, (32, *SHAPE), generator=g), g)  # data-dependent init of ActNorm
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@pytest.mark.parametrize("name", list(TINY))
def test_whole_model_inverts_and_its_log_det_is_the_jacobians(name: str) -> None:
    model = tiny_model(name)
    y = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z, log_det = model.flow(y)
    assert z.shape == (2, 16)
    assert torch.allclose(model.flow.inverse(z), y, atol=1e-9)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: model.flow(v.view(1, *SHAPE))[0].flatten(), y[b].flatten())
        assert log_det[b].item() == pytest.approx(torch.linalg.slogdet(jac).logabsdet.item(), abs=1e-7)


def test_the_bound_subtracts_d_log_l_and_log_prob_is_deterministic() -> None:
    model = tiny_model("realnvp")
    x = torch.randint(0, LEVELS, (5, *SHAPE), generator=torch.Generator().manual_seed(2))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = dequantise(x, LEVELS, u)
    assert y.min() >= 0 and y.max() <= 1 and torch.equal(torch.floor(y * LEVELS).long(), x)
    assert torch.allclose(model.bound(x, u), model.log_density(y) - 16 * math.log(LEVELS))
    loss = model.loss(x, torch.Generator().manual_seed(3))
    assert loss.shape == (5,) and torch.allclose(loss, -model.bound(x, u))
    first = model.log_prob(x)
    assert first.shape == (5,) and torch.equal(first, model.log_prob(x))
    u_eval = torch.rand(x.shape, generator=torch.Generator().manual_seed(EVAL_SEED), dtype=torch.float64)
    assert torch.allclose(first, model.bound(x, u_eval))


def test_an_untrained_realnvp_is_the_logit_of_a_standard_normal() -> None:
    torch.manual_seed(0)
    model = RealNVPConfig(width=4, alpha=0.05).build((1, 8, 8), LEVELS).double()  # every coupling is the identity
    y = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    alpha = 0.05
    p = alpha + (1 - 2 * alpha) * y
    z = torch.log(p / (1 - p))
    per_pixel = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) + math.log(1 - 2 * alpha) - torch.log(p * (1 - p))
    assert torch.allclose(model.log_density(y), per_pixel.flatten(1).sum(1))


def test_importance_weighted_log_prob_averages_the_likelihoods_of_several_draws() -> None:
    model = tiny_model("glow")
    model.eval_samples = 4
    x = torch.randint(0, LEVELS, (3, *SHAPE), generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(EVAL_SEED)
    bounds = torch.stack([model.bound(x, torch.rand(x.shape, generator=g, dtype=torch.float64)) for _ in range(4)])
    weighted = model.log_prob(x)
    assert torch.allclose(weighted, log_mean_exp(bounds, 0))
    assert (weighted >= bounds.mean(0) - 1e-9).all()  # Jensen: at least the mean one-sample bound


@pytest.mark.parametrize("name", list(TINY))
def test_samples_are_seeded_grey_levels(name: str) -> None:
    model = tiny_model(name).float()
    a = model.sample(6, torch.Generator().manual_seed(5))
    assert a.dtype == torch.int64 and a.shape == (6, *SHAPE)
    assert a.min() >= 0 and a.max() <= LEVELS - 1
    assert torch.equal(a, model.sample(6, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, model.sample(6, torch.Generator().manual_seed(6)))


def test_binary_data_is_refused() -> None:
    for config in TINY.values():
        with pytest.raises(ValueError, match="--data digits-grey"):
            config.build(SHAPE, 2)
    with pytest.raises(ValueError, match="scales=4 is too many"):
        RealNVPConfig(scales=4).build((1, 8, 8), LEVELS)
    with pytest.raises(ValueError, match="L, K and width must be >= 1"):
        GlowConfig(K=0)


def test_glow_actnorm_state_is_kept_by_a_run_and_its_reload(tmp_path) -> None:
    config = density_model("tiny-glow", GlowConfig(L=2, K=2, width=8), "test",
                           fit=FitConfig(steps=30, lr=2e-3, eval_every=10, progress=False)).config(data="digits-grey")
    result = train_density(config, tmp_path / "glow")
    flags = [v for k, v in result.model.state_dict().items() if k.endswith("initialised")]
    assert len(flags) == 4 and all(bool(f) for f in flags)
    model, split = load_density(tmp_path / "glow", config)
    x_test = torch.from_numpy(split.x_test)
    assert held_out_nll(model, x_test, None)[0] == pytest.approx(result.test_nll, rel=1e-6)


@pytest.mark.parametrize("name", ["nice", "realnvp"])
def test_a_short_run_of_the_density_task_lowers_the_nll(tmp_path, name: str) -> None:
    config = density_model(f"tiny-{name}", TINY[name], "test", batch_size=32,
                           fit=FitConfig(steps=40, lr=3e-3, eval_every=20, progress=False)).config(data="digits-grey")
    result = train_density(config, tmp_path / name)
    torch.manual_seed(0)  # the same initialisation as the run's (FitConfig.seed = 0)
    untrained = TINY[name].build((1, 8, 8), LEVELS)
    _, split = load_density(tmp_path / name, config)
    before = held_out_nll(untrained, torch.from_numpy(split.x_test), None)[0]
    assert result.model.levels == LEVELS and result.best_step > 0
    assert result.test_nll < before - 20  # nats per image
    assert result.test_bits_per_dim == pytest.approx(result.test_nll / (64 * math.log(2)))


FLOW_FIT = {
    "realnvp": FitConfig(steps=1500, lr=1e-3, eval_every=100, checkpoint_every=500, progress=False),
    "glow": FitConfig(steps=2000, lr=1e-3, eval_every=100, checkpoint_every=500, progress=False),
}
"""The training the slow target test runs (the registry's defaults)."""


@pytest.mark.slow
@pytest.mark.parametrize("name, config", [("realnvp", RealNVPConfig()), ("glow", GlowConfig())])
def test_flows_reach_the_target_on_the_grey_digits(tmp_path, name: str, config) -> None:
    train = density_model(name, config, "target", fit=FLOW_FIT[name]).config(data="digits-grey")
    result = train_density(train, tmp_path / name)
    assert result.test_bits_per_dim < 2.2
