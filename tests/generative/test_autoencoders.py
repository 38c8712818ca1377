"""Autoencoders (notes §6.1-6.2): the linear autoencoder finds PCA, corruptions, denoising, the figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from generative.data.digits import load_digits_split
from generative.models.autoencoders import (
    Autoencoder,
    LinearAutoencoder,
    add_noise,
    fit_linear_autoencoder,
    mask_pixels,
    pca,
    principal_angles,
    reconstruction_error,
)
from generative.models.vae import VAEConfig
from generative.tasks.autoencoders import (
    AEConfig,
    autoencoder_figure,
    kl_figure,
    latent_map_figure,
    mean_squared_error,
    reconstructions_figure,
    train_autoencoder,
    vae_figures,
)
from generative.training import FitConfig


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(form="float")


def test_pca_is_the_eigendecomposition_and_its_error_the_discarded_eigenvalues(digits) -> None:
    x = torch.from_numpy(digits.x_train).double()  # [N, 1, 8, 8]
    mean, U, eigenvalues = pca(x.flatten(1), 6)
    centred = x.flatten(1) - mean
    covariance = centred.T @ centred / len(x)
    assert torch.allclose(covariance @ U, U * eigenvalues[:6], atol=1e-10)  # eigenvectors
    assert torch.allclose(U.T @ U, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()
    assert torch.isclose(eigenvalues.sum(), torch.trace(covariance))
    model = LinearAutoencoder.from_pca(mean, U, (1, 8, 8))  # the closed-form optimum of §6.1
    error = reconstruction_error(x, model(x)).mean()
    assert torch.isclose(error, eigenvalues[6:].sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="k must"):
        pca(x.flatten(1), 65)


def test_principal_angles_known_and_tiny_angles() -> None:
    e = torch.eye(5, dtype=torch.float64)
    for theta in (1e-9, 1e-4, 0.3, math.pi / 2):
        A, B = e[:, :2], torch.stack([e[:, 0], math.cos(theta) * e[:, 1] + math.sin(theta) * e[:, 2]], 1)
        angles = principal_angles(A, B)
        assert torch.allclose(angles, torch.tensor([0.0, theta], dtype=torch.float64), rtol=1e-6, atol=1e-15)
    g = torch.Generator().manual_seed(0)
    M = torch.randn((10, 3), generator=g, dtype=torch.float64)
    mixed = M @ torch.randn((3, 3), generator=g, dtype=torch.float64)  # another basis of the same space
    assert principal_angles(M, mixed).max() < 1e-7
    assert principal_angles(M, torch.cat([M, torch.randn((10, 2), generator=g, dtype=torch.float64)], 1)).max() < 1e-7
    with pytest.raises(ValueError, match="same D"):
        principal_angles(M, M[:5])


def test_linear_autoencoder_trained_by_gradient_descent_finds_the_pca_subspace(digits) -> None:
    """Notes §6.1 (Baldi & Hornik 1989): the minimum of the squared error spans the top-k principal subspace."""
    k = 4
    x = torch.from_numpy(digits.x_train).double()  # [1257, 1, 8, 8], full batch
    _, U, eigenvalues = pca(x.flatten(1), k)
    model = fit_linear_autoencoder(x, k, steps=1000, lr=0.05)  # learns the biases too: no centring
    assert isinstance(model, LinearAutoencoder)
    with torch.no_grad():
        error = reconstruction_error(x, model(x)).mean()
    assert principal_angles(model.B.detach(), U).max() < 1e-3
    assert abs(float(error) / float(eigenvalues[k:].sum()) - 1) < 1e-4  # = the sum of the discarded eigenvalues


def test_corruptions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((200, 1, 8, 8), generator=g)
    noisy = add_noise(x, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(noisy, add_noise(x, 0.3, torch.Generator().manual_seed(1)))  # seeded
    assert abs(float((noisy - x).std()) - 0.3) < 0.01 and abs(float((noisy - x).mean())) < 0.01
    masked, keep = mask_pixels(x, fraction=0.25, generator=g)
    assert keep.shape == (200, 1, 8, 8) and abs(1 - float(keep.mean()) - 0.25) < 0.02
    assert torch.equal(masked, x * keep) and torch.equal(masked[keep == 1], x[keep == 1])
    masked, keep = mask_pixels(x, square=3, generator=g)
    assert ((1 - keep).flatten(1).sum(1) == 9).all()  # one 3x3 hole per image
    rows, cols = (1 - keep)[:, 0].sum(2), (1 - keep)[:, 0].sum(1)
    assert (((rows == 3) | (rows == 0)).all()) and (((cols == 3) | (cols == 0)).all())  # a square, not scattered
    for kwargs in ({}, {"fraction": 0.2, "square": 2}, {"fraction": 1.5}, {"square": 9}):
        with pytest.raises(ValueError):
            mask_pixels(x, generator=g, **kwargs)
    with pytest.raises(ValueError, match="std"):
        add_noise(x, -1.0)


def test_autoencoder_shapes_and_completeness() -> None:
    under, over = Autoencoder((1, 8, 8), 8, (32,)), Autoencoder((1, 8, 8), 128, (32,))
    x = torch.rand(3, 1, 8, 8)
    assert under(x).shape == x.shape and under.encode(x).shape == (3, 8) and not under.overcomplete
    assert over.encode(x).shape == (3, 128) and over.overcomplete
    assert 0 < float(under(x).detach().min()) and float(under(x).detach().max()) < 1  # sigmoid output
    with pytest.raises(ValueError, match="x must be"):
        under(torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="latent must be < 64"):
        AEConfig(variant="undercomplete", latent=64).build((1, 8, 8), 17)
    for bad in ({"variant": "sparse"}, {"latent": 0}, {"noise_std": -0.1}, {"mask_fraction": 1.0},
                {"batch_size": 0}, {"hidden": ()}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AEConfig(**bad)


def _short(variant: str, tmp_path, steps: int = 600, **kwargs) -> AEConfig:
    fit = FitConfig(steps=steps, lr=2e-3, log_every=100, checkpoint_every=steps, progress=False)
    return AEConfig(variant=variant, fit=fit, **kwargs)  # type: ignore[arg-type]


def test_denoising_autoencoder_beats_the_noisy_input_and_a_plain_autoencoder(tmp_path, digits) -> None:
    denoising = train_autoencoder(_short("denoising", tmp_path), tmp_path / "dae")
    assert denoising.test_mse_corrupted < 0.5 * denoising.baseline_mse  # better than returning the noisy input
    # the same overcomplete network trained on clean inputs (latent 128 > 64 pixels) passes the noise through
    plain = train_autoencoder(_short("denoising", tmp_path, noise_std=0.0), tmp_path / "plain").model
    x_test = torch.from_numpy(digits.x_test)
    noisy = add_noise(x_test, 0.3, torch.Generator().manual_seed(1))  # = evaluation's corruption (seed 0 + 1)
    plain_error = mean_squared_error(plain, x_test, noisy)
    assert abs(mean_squared_error(denoising.model, x_test, noisy) - denoising.test_mse_corrupted) < 1e-6
    assert denoising.test_mse_corrupted < 0.7 * plain_error
    assert (tmp_path / "dae" / "metrics.csv").exists() and math.isfinite(denoising.val_mse)


def test_inpainting_and_undercomplete_runs(tmp_path, digits) -> None:
    inpainting = train_autoencoder(_short("inpainting", tmp_path, steps=600), tmp_path / "inpaint")
    assert inpainting.test_mse_corrupted < 0.5 * inpainting.baseline_mse  # fills the holes in
    under = train_autoencoder(_short("undercomplete", tmp_path, steps=600), tmp_path / "under")
    assert math.isnan(under.test_mse_corrupted) and math.isnan(under.baseline_mse)
    x = torch.from_numpy(digits.x_train).double().flatten(1)
    pca_error = float(pca(x, 8)[2][8:].sum()) / 64  # per pixel, the best linear 8-D code (train set)
    assert under.test_mse < 1.5 * pca_error  # a non-linear 8-D code in a short run is near PCA's
    fig = autoencoder_figure(inpainting.model, _short("inpainting", tmp_path), torch.from_numpy(digits.x_test))
    assert isinstance(fig, Figure) and len(fig.axes) == 30  # input / corrupted / output rows of 10


def test_figures_of_a_vae() -> None:
    split = load_digits_split(form="binary")
    x, y = torch.from_numpy(split.x_test[:60]), split.y_test[:60]
    torch.manual_seed(0)
    model = VAEConfig(latent=5, hidden=(16,)).build((1, 8, 8), 2)
    figures = vae_figures(model, x, y, seed=0)
    assert set(figures) == {"samples", "interpolation", "latent_map", "traversals", "kl"}
    assert len(figures["traversals"].axes) == 5 * 7  # rows = dimensions, columns = -3..3
    assert "PCA" in figures["latent_map"].axes[0].get_title()
    two = VAEConfig(latent=2, hidden=(16,)).build((1, 8, 8), 2)
    assert "PCA" not in latent_map_figure(two, x, y).axes[0].get_title()
    assert "2 of 3 active" in kl_figure(np.array([0.5, 0.001, 0.2])).axes[0].get_title()
    with pytest.raises(ValueError, match="row"):
        reconstructions_figure(np.zeros((4, 1, 8, 8)), np.zeros((3, 1, 8, 8)))
