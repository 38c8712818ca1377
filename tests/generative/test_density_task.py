"""The one training task of the image densities (generative.tasks.density): early stopping on the validation
NLL, best weights in the checkpoint and in best.pt, bit-identical resume, the test numbers, the sample grid."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from generative.commands import density_model
from generative.models.base import ImageDensity, discrete_log_prob, discrete_sample
from generative.tasks.density import BEST, held_out_nll, load_density, sample_density, tile, train_density
from generative.training import FitConfig


class PixelLogits(ImageDensity):
    """Independent pixels behind a small hidden layer (enough parameters to overfit and to need early stopping)."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int, width: int) -> None:
        super().__init__()
        self.image_shape, self.levels = image_shape, levels
        n = int(np.prod(image_shape))
        self.code = nn.Parameter(torch.randn(width) * 0.1)
        self.out = nn.Linear(width, n * (levels if levels > 2 else 1))

    def logits(self, batch: int) -> Tensor:
        flat = self.out(torch.tanh(self.code)).expand(batch, -1)
        if self.levels == 2:
            return flat.reshape(batch, *self.image_shape)
        return flat.reshape(batch, self.levels, *self.image_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        return discrete_log_prob(self.logits(len(x)), x, self.levels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return discrete_sample(self.logits(n), self.levels, generator)


@dataclass
class PixelConfig:
    width: int = 8
    """Hidden width."""

    def build(self, image_shape: tuple[int, int, int], levels: int) -> PixelLogits:
        return PixelLogits(image_shape, levels, self.width)


CONFIG = density_model("pixels", PixelConfig, "test model",
                       fit=FitConfig(steps=60, lr=0.2, eval_every=10, checkpoint_every=20, progress=False)).config


def metric_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_early_stopping_keeps_the_best_validation_weights(tmp_path) -> None:
    config = CONFIG()
    result = train_density(config, tmp_path / "run")
    rows = [r for r in metric_rows(tmp_path / "run") if r.get("val_nll")]
    vals = [float(r["val_nll"]) for r in rows]
    assert len(vals) == 6
    assert result.val_nll == pytest.approx(min(vals), rel=1e-6)
    assert result.best_step == int(rows[int(np.argmin(vals))]["step"])
    # the returned model holds the best weights: its validation NLL is the best one, and best.pt holds them
    model, split = load_density(tmp_path / "run", config)
    x_test = torch.from_numpy(split.x_test)
    assert held_out_nll(model, x_test, 1)[0] == pytest.approx(result.test_nll, rel=1e-6)
    assert (tmp_path / "run" / BEST).is_file()
    assert result.test_bits_per_dim == pytest.approx(result.test_nll / (64 * math.log(2)))
    assert math.isnan(result.test_elbo_nll)
    assert result.parameters == 8 + 8 * 64 + 64


def test_resume_is_bit_identical(tmp_path) -> None:
    fit = FitConfig(steps=60, lr=0.2, schedule="constant", eval_every=10, checkpoint_every=20, progress=False)
    full = train_density(CONFIG(fit=fit), tmp_path / "full")
    train_density(CONFIG(fit=FitConfig(**{**fit.__dict__, "steps": 30})), tmp_path / "split")
    resumed = train_density(CONFIG(fit=fit), tmp_path / "split", resume=True)
    assert resumed.test_nll == full.test_nll and resumed.best_step == full.best_step
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_grey_data_and_sample_grid(tmp_path) -> None:
    config = CONFIG(data="digits-grey", fit=FitConfig(steps=20, lr=0.2, eval_every=10, progress=False))
    result = train_density(config, tmp_path / "run")
    assert result.model.levels == 17
    summary = sample_density(tmp_path / "run", config, 10, tmp_path / "grid.png", seed=3)
    import imageio.v3 as iio

    grid = iio.imread(tmp_path / "grid.png")
    assert grid.shape == ((3 * 9 + 1) * 8, (4 * 9 + 1) * 8) and summary["n"] == 10
    again = sample_density(tmp_path / "run", config, 10, tmp_path / "again.png", seed=3)
    assert np.array_equal(iio.imread(again["out"]), grid)


def test_tile_places_every_image() -> None:
    images = np.arange(6 * 4, dtype=np.float32).reshape(6, 1, 2, 2) / 24
    canvas = tile(images, columns=4)
    assert canvas.shape == (2 * 3 + 1, 4 * 3 + 1)
    assert np.array_equal(canvas[1 + 3: 3 + 3, 1 + 3: 3 + 3], images[5, 0])
    assert canvas[0, 0] == 0.5
    with pytest.raises(ValueError, match="images must be"):
        tile(images[:, 0], 2)


def test_kl_warmup_raises_the_weight_linearly_and_only_for_latent_models(tmp_path) -> None:
    from generative.models.vae import VAEConfig

    vae = density_model("tiny-vae", VAEConfig(latent=2, hidden=(8,), dropout=0.0), "test",
                        fit=FitConfig(steps=10, eval_every=5, progress=False), iwae_k=2, kl_warmup=20).config
    result = train_density(vae(), tmp_path / "vae")
    assert result.model.kl_scale == pytest.approx(10 / 20)  # step 10 of 20
    assert result.test_elbo_nll >= result.test_nll - 1e-4  # the IWAE bound (k = 2) is at least as tight
    with pytest.raises(ValueError, match="kl_warmup: PixelLogits has no KL term"):
        train_density(CONFIG(kl_warmup=5), tmp_path / "pixels")


def test_a_beta_vae_is_chosen_by_its_own_objective_not_the_elbo(tmp_path) -> None:
    from generative.models.vae import VAEConfig
    from generative.tasks.density import held_out_objective

    beta = density_model("tiny-beta-vae", VAEConfig(latent=2, hidden=(8,), dropout=0.0, beta=4.0), "test",
                         fit=FitConfig(steps=20, eval_every=5, progress=False), iwae_k=2).config
    config = beta()
    result = train_density(config, tmp_path / "run")
    model, split = load_density(tmp_path / "run", config)
    x_val = torch.from_numpy(split.x_val)
    chosen = held_out_objective(model, x_val)
    assert result.val_nll == pytest.approx(chosen, rel=1e-6)
    rows = [r for r in metric_rows(tmp_path / "run") if r.get("best_val_objective")]
    assert float(rows[-1]["best_val_objective"]) == pytest.approx(chosen, rel=1e-6)
    assert chosen > held_out_nll(model, x_val, None)[0] + 1e-3  # beta = 4 prices the KL above the ELBO's


def test_a_vae_can_be_chosen_by_its_validation_iwae_bound(tmp_path) -> None:
    from generative.models.vae import VAEConfig

    vae = density_model("tiny-vae-k", VAEConfig(latent=2, hidden=(8,), dropout=0.0), "test",
                        fit=FitConfig(steps=20, eval_every=5, progress=False), iwae_k=2, select_k=16).config
    config = vae()
    result = train_density(config, tmp_path / "run")
    model, split = load_density(tmp_path / "run", config)
    assert result.val_nll == pytest.approx(held_out_nll(model, torch.from_numpy(split.x_val), 16)[0], rel=1e-6)
    beta = density_model("tiny-beta-k", VAEConfig(latent=2, hidden=(8,), beta=4.0), "test", select_k=16).config
    with pytest.raises(ValueError, match="select_k: VAE does not maximise"):
        train_density(beta(), tmp_path / "beta")
