"""The fixed digits split (360 stratified test images) and the four pixel forms."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from generative.data.digits import DataConfig, Split, apply_form, load_digits_split, load_split


def test_split_sizes_types_and_range():
    split = load_digits_split()
    assert isinstance(split, Split)
    assert split.x_train.shape == (1257, 1, 8, 8) and split.x_val.shape == (180, 1, 8, 8)
    assert split.x_test.shape == (360, 1, 8, 8) and split.image_shape == (1, 8, 8)
    for x, y in [(split.x_train, split.y_train), (split.x_val, split.y_val), (split.x_test, split.y_test)]:
        assert x.dtype == np.float32 and y.dtype == np.int64 and len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0
    # stratified: every class in every part, in proportion
    for y, n in [(split.y_test, 360), (split.y_val, 180)]:
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= n // 10 - 2 and counts.max() <= n // 10 + 2


def test_test_set_is_the_project_wide_split_and_parts_are_disjoint():
    digits = load_digits()
    _, x_test, _, y_test = train_test_split(
        digits.images, digits.target, test_size=360, stratify=digits.target, random_state=0
    )
    split = load_digits_split(val_seed=5)  # the validation seed never moves the test set
    np.testing.assert_array_equal(split.x_test[:, 0], (x_test / 16).astype(np.float32))
    np.testing.assert_array_equal(split.y_test, y_test)
    # the three parts together are the 1797 images, each once
    all_x = np.concatenate([split.x_train, split.x_val, split.x_test]).reshape(-1, 64)
    assert len(np.unique(all_x, axis=0)) == len(np.unique(digits.data, axis=0))
    assert len(all_x) == 1797
    # validation seeded: same seed same split, another seed another
    a, b, c = load_digits_split(val_seed=1), load_digits_split(val_seed=1), load_digits_split(val_seed=2)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.x_val, c.x_val)


def test_forms():
    raw = np.arange(17).reshape(1, 1, 1, 17)
    np.testing.assert_allclose(apply_form(raw, 17, "float")[0, 0, 0], np.arange(17) / 16, rtol=1e-6)
    np.testing.assert_array_equal(apply_form(raw, 17, "binary")[0, 0, 0], (np.arange(17) >= 8).astype(np.float32))
    grey = apply_form(raw, 17, "grey")
    assert grey.dtype == np.int64 and grey.max() == 16
    rng = np.random.default_rng(0)
    cont = apply_form(np.repeat(raw, 1000, axis=0), 17, "continuous", rng)
    # dequantised: floor(17 x) recovers the level, and within a level x is uniform
    np.testing.assert_array_equal(np.floor(cont * 17).astype(int), np.repeat(raw, 1000, axis=0))
    frac = cont * 17 - np.floor(cont * 17)
    assert abs(frac.mean() - 0.5) < 0.01 and abs(frac.var() - 1 / 12) < 0.005
    with pytest.raises(ValueError, match="rng"):
        apply_form(raw, 17, "continuous")
    with pytest.raises(ValueError, match="0..16"):
        apply_form(raw + 1, 17, "float")


def test_split_forms_agree_with_each_other_and_are_seeded():
    f = load_digits_split(form="float")
    b = load_digits_split(form="binary")
    g = load_digits_split(form="grey")
    c1 = load_digits_split(form="continuous", dequantise_seed=3)
    c2 = load_digits_split(form="continuous", dequantise_seed=3)
    np.testing.assert_array_equal(g.y_train, f.y_train)
    np.testing.assert_allclose(g.x_train / 16, f.x_train, rtol=1e-6)
    np.testing.assert_array_equal(b.x_test, (g.x_test >= 8).astype(np.float32))
    np.testing.assert_array_equal(c1.x_train, c2.x_train)
    np.testing.assert_array_equal(np.floor(c1.x_val * 17).astype(np.int64), g.x_val)


def test_data_config():
    split = load_split(DataConfig(val_size=100))
    assert len(split.x_val) == 100 and len(split.x_train) == 1337
    with pytest.raises(ValueError, match="mnist_dir"):
        DataConfig(dataset="mnist")
    with pytest.raises(ValueError, match="form"):
        DataConfig(form="colour")
    with pytest.raises(ValueError, match="val_size"):
        load_digits_split(val_size=1437)
