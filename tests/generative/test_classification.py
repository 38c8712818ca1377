"""Digit classification through the engine: accuracy numbers, seeding, resume, augmentation, figures."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from generative.data.digits import DataConfig, load_digits_split
from generative.tasks.classification import (
    CNNConfig,
    MLPConfig,
    classifier_figures,
    confusion_matrix,
    random_shift,
    train_cnn,
    train_mlp,
)
from generative.training import FitConfig


def _quiet(config, **fit):
    config.fit = dataclasses.replace(config.fit, progress=False, **fit)
    return config


def test_cnn_default_config_reaches_097_on_the_digits(tmp_path):
    result = train_cnn(_quiet(CNNConfig()), tmp_path / "cnn")
    assert result.test_accuracy >= 0.97
    assert result.val_accuracy >= 0.95
    assert result.train_loss < 0.1
    assert (tmp_path / "cnn" / "metrics.csv").exists()
    assert json.loads((tmp_path / "cnn" / "config.json").read_text())  # the typed config is recorded
    grid, confusion = classifier_figures(result.model, load_digits_split())
    assert isinstance(grid, Figure) and isinstance(confusion, Figure)


def test_short_mlp_run_is_seeded_and_learns(tmp_path):
    config = MLPConfig(fit=FitConfig(steps=300, lr=2e-3, log_every=100, progress=False))
    a = train_mlp(config, tmp_path / "a")
    b = train_mlp(config, tmp_path / "b")
    assert a.test_accuracy == b.test_accuracy and a.fit.losses == b.fit.losses  # same seed, same numbers
    assert a.test_accuracy > 0.9  # from 0.1 by chance
    c = train_mlp(_quiet(MLPConfig(fit=FitConfig(steps=300, lr=2e-3, seed=1))), tmp_path / "c")
    assert c.fit.losses != a.fit.losses


def test_resume_continues_exactly(tmp_path):
    def config(steps):
        fit = FitConfig(steps=steps, lr=2e-3, schedule="constant", log_every=10, checkpoint_every=10, progress=False)
        return CNNConfig(channels=(4, 8), hidden=16, fit=fit)

    whole = train_cnn(config(40), tmp_path / "whole")
    train_cnn(config(20), tmp_path / "split")
    resumed = train_cnn(config(40), tmp_path / "split", resume=True)
    assert resumed.fit.losses == whole.fit.losses  # the constant schedule does not depend on the total
    assert resumed.test_accuracy == whole.test_accuracy
    for p, q in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(p, q)


def test_random_shift_translates_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0  # one bright pixel away from the border
    out = random_shift(x, 1, g)
    assert torch.equal(random_shift(x, 0, g), x)
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert len(rows) == 64 and float(out.sum()) == 64.0  # each image keeps its one pixel
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}  # every shift in {-1, 0, 1}
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_shift(torch.zeros(3, 8, 8), 1, g)


def test_confusion_matrix():
    matrix = confusion_matrix(np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]
    with pytest.raises(ValueError, match="y_true and y_pred"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int))


def test_config_errors():
    with pytest.raises(ValueError, match="float form"):
        CNNConfig(data=DataConfig(form="binary"))
    with pytest.raises(ValueError, match="batch_size"):
        MLPConfig(batch_size=0)
    with pytest.raises(ValueError, match="dropout"):
        CNNConfig(dropout=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("hand_written", [False, True])
def test_cnn_reaches_097_for_other_seeds_and_with_hand_written_layers(tmp_path, seed, hand_written, measured):
    result = train_cnn(_quiet(CNNConfig(hand_written=hand_written), seed=seed), tmp_path)
    measured(f"test accuracy {result.test_accuracy:.3f}")
    assert result.test_accuracy >= 0.97


def test_mlp_default_config(tmp_path):
    result = train_mlp(_quiet(MLPConfig()), tmp_path)
    assert result.test_accuracy >= 0.95


def test_cnn_trains_on_mnist_format_files(tmp_path):
    """The MNIST path end to end, on a tiny folder of IDX files (class k: a bright bar at row 2k)."""
    from generative.data.mnist import FILES, write_idx

    rng = np.random.default_rng(0)
    for part, n in [("train", 300), ("test", 100)]:
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 3 : 2 * k + 6, 6:22] = 255
        write_idx(tmp_path / FILES[f"{part}_images"], images)
        write_idx(tmp_path / FILES[f"{part}_labels"], labels.astype(np.uint8))
    config = CNNConfig(channels=(8, 16), hidden=32, data=DataConfig(dataset="mnist", mnist_dir=tmp_path, val_size=50),
                       fit=FitConfig(steps=150, lr=3e-3, log_every=50, progress=False))
    result = train_cnn(config, tmp_path / "run")
    assert result.model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert result.test_accuracy >= 0.9
