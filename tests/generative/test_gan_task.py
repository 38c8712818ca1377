"""GAN training on the engine (generative.tasks.gan): mode metrics, learning, bit-identical resume, config errors."""

import dataclasses
import math

import pytest
import torch

from envs.io.checkpoint import load_checkpoint
from generative.data.toys import MIXTURE_STD, mixture_means
from generative.tasks.gan import (
    GANObjective,
    GANTrainConfig,
    digits_gan_config,
    gan_images,
    mode_coverage,
    mode_experiment_config,
    sample_gan,
    train_gan,
)
from generative.training import CHECKPOINT, FitConfig, resolve_device, seed_everything

torch.set_num_threads(1)


def _fit(steps: int, **kw) -> FitConfig:
    return FitConfig(steps=steps, schedule="constant", progress=False, log_every=10, checkpoint_every=1000, **kw)


def _tiny(steps: int, **kw) -> GANTrainConfig:
    base = {"latent_dim": 8, "g_hidden": (32, 32), "d_hidden": (32, 32), "batch_size": 64, "eval_samples": 500,
            "fit": _fit(steps)}
    base.update(kw)
    return GANTrainConfig(**base)


def test_mode_coverage_on_hand_made_samples():
    means = mixture_means("8gaussians").float()  # [8, 2] on the circle of radius 2
    s = MIXTURE_STD
    out = torch.tensor([[1.0, 0.0]])
    samples = torch.cat([
        means[0].repeat(100, 1),  # exactly on mode 0
        (means[1] + torch.tensor([2.9 * s, 0.0])).repeat(100, 1),  # 2.9 std from mode 1: high quality
        (means[2] + torch.tensor([0.0, 3.1 * s])).repeat(100, 1),  # 3.1 std from mode 2: not
        torch.zeros(100, 2),  # the centre: 2 from every mode
        means[3][None],  # one stray sample on mode 3
    ])
    cover = mode_coverage(samples, means, s)
    assert cover.counts == [100, 100, 0, 1, 0, 0, 0, 0]
    assert cover.high_quality_fraction == pytest.approx(201 / 401)
    assert cover.modes == 2  # a quarter of the fair share is 401 / 8 / 4 = 12.5 samples
    assert cover.modes_any == 3 and cover.total_modes == 8
    assert mode_coverage(samples, means, s, min_share=0.0).modes == 8  # every mode passes a zero threshold
    assert mode_coverage(out, means, s).high_quality_fraction == 0.0
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(torch.zeros(3, 3), means, s)


def test_a_short_run_moves_samples_toward_the_modes(tmp_path):
    config = _tiny(300, lr_d=1e-3, eval_samples=1000)
    seed_everything(config.fit.seed)  # the untrained players of the same seed
    g0, d0 = config.players()
    before = GANObjective(config, g0, d0, resolve_device("cpu")).generate(1000)
    untrained = mode_coverage(before, mixture_means("8gaussians"), MIXTURE_STD).high_quality_fraction
    result = train_gan(config, tmp_path / "run")
    assert result.high_quality_fraction > untrained + 0.15, (untrained, result.high_quality_fraction)
    assert result.fit.rows[-1]["high_quality"] == result.high_quality_fraction  # the engine's final evaluation
    summary = sample_gan(tmp_path / "run", config, 500, tmp_path / "toy.png", seed=0)
    assert (tmp_path / "toy.png").stat().st_size > 0 and summary["high_quality_fraction"] > untrained


@pytest.mark.parametrize("kw", [{"variant": "minimax", "unroll_steps": 2}, {"variant": "wgan-gp", "d_steps": 2},
                                {"variant": "r1", "gamma": 5.0}])
def test_resume_is_bit_identical(tmp_path, kw):
    whole = train_gan(_tiny(8, **kw), tmp_path / "whole")
    first = _tiny(8, **kw)
    train_gan(dataclasses.replace(first, fit=_fit(4)), tmp_path / "split")
    resumed = train_gan(first, tmp_path / "split", resume=True)
    assert resumed.fit.losses == whole.fit.losses
    for name in ("generator", "discriminator"):
        a = load_checkpoint(tmp_path / "whole" / CHECKPOINT)["modules"][name]
        b = load_checkpoint(tmp_path / "split" / CHECKPOINT)["modules"][name]
        assert all(torch.equal(a[k], b[k]) for k in a)
    # and training moved both players (a resume that reloads nothing would fail the equality above anyway)
    assert not torch.equal(whole.generator.net.net[0].weight, _tiny(8, **kw).players()[0].net.net[0].weight)


def test_unrolled_generator_step_differs_from_the_plain_one(tmp_path):
    """The same seed with and without unrolling: identical discriminator step, different generator step."""
    plain = train_gan(_tiny(1, variant="minimax"), tmp_path / "plain")
    unrolled = train_gan(_tiny(1, variant="minimax", unroll_steps=3), tmp_path / "unrolled")
    assert all(torch.equal(a, b) for a, b in zip(plain.discriminator.parameters(), unrolled.discriminator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.generator.parameters(), unrolled.generator.parameters()))


def test_dcgan_on_digits_smoke(tmp_path):
    config = GANTrainConfig(data="digits", latent_dim=16, conv_width=8, batch_size=32, lr_d=2e-4, lr_g=2e-4,
                            fit=_fit(20))
    result = train_gan(config, tmp_path / "digits")
    assert math.isfinite(result.fdd) and result.fdd > 0
    x = gan_images(tmp_path / "digits", config, 7, seed=3)
    assert x.shape == (7, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    torch.testing.assert_close(x, gan_images(tmp_path / "digits", config, 7, seed=3))  # seeded
    sample_gan(tmp_path / "digits", config, 16, tmp_path / "grid.png", seed=0)
    assert (tmp_path / "grid.png").stat().st_size > 0
    with pytest.raises(ValueError, match="digits run"):
        gan_images(tmp_path / "digits", _tiny(1), 2, seed=0)


@pytest.mark.parametrize("bad", [{"data": "mnist"}, {"variant": "vanilla"}, {"unroll_steps": -1},
                                 {"variant": "wgan-gp", "unroll_steps": 2}, {"d_steps": 0}, {"gamma": -1.0},
                                 {"batch_size": 1}, {"g_hidden": ()}, {"lr_d": 0.0}, {"betas": (0.5, 1.0)},
                                 {"unroll_optimizer": "rmsprop"}, {"unroll_lr": 0.0}])
def test_config_errors_are_one_line(bad):
    with pytest.raises(ValueError) as err:
        GANTrainConfig(**bad)
    message = str(err.value)
    assert "\n" not in message
    assert any(key in message for key in bad), message


def test_mode_experiment_configs():
    unrolled = mode_experiment_config("unrolled-10", "25gaussians", seed=3, steps=50)
    assert (unrolled.variant, unrolled.unroll_steps, unrolled.data) == ("minimax", 10, "25gaussians")
    assert (unrolled.fit.seed, unrolled.fit.steps) == (3, 50)
    assert mode_experiment_config("wgan-gp").d_steps == 5
    digits = digits_gan_config(batch_size=8)
    assert (digits.data, digits.batch_size, digits.lr_d, digits.fit.steps) == ("digits", 8, 2e-4, 12000)
    with pytest.raises(ValueError, match="name must be"):
        mode_experiment_config("vanilla")


@pytest.mark.slow
def test_unrolled_gan_covers_the_ring(tmp_path):
    """The target of benchmarks/bench_gan_modes.py: unrolled (5 steps) covers 8/8 ring modes on >= 4 of 5 seeds."""
    modes = [train_gan(mode_experiment_config("unrolled-5", "8gaussians", seed, steps=1000), tmp_path / str(seed)).modes
             for seed in range(5)]
    assert sum(m == 8 for m in modes) >= 4, modes
