"""Procedural shapes for segmentation: seeding, label/image consistency, shape kinds, the fixed test set."""

import numpy as np
import pytest

from generative.data.shapes import CLASSES, ShapesSpec, draw_image, shapes_batch, test_set


def test_same_seed_same_images_and_other_seed_other_images():
    a = shapes_batch(6, np.random.default_rng(3))
    b = shapes_batch(6, np.random.default_rng(3))
    c = shapes_batch(6, np.random.default_rng(4))
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 16), (3, 48)])
def test_shapes_dtypes_ranges_and_labels(channels, size):
    spec = ShapesSpec(size=size, channels=channels, max_radius=min(9.0, size / 2 - 1))
    batch = shapes_batch(20, np.random.default_rng(0), spec)
    assert batch.images.shape == (20, channels, size, size) and batch.images.dtype == np.float32
    assert batch.labels.shape == (20, size, size) and batch.labels.dtype == np.int64
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert set(np.unique(batch.labels)) <= set(range(len(CLASSES)))
    assert all((labels > 0).any() for labels in batch.labels)  # at least one shape per image


def test_every_kind_appears_and_the_test_set_is_fixed():
    fixed = test_set(64)
    assert np.array_equal(fixed.labels, test_set(64).labels)
    counts = np.bincount(fixed.labels.ravel(), minlength=4)
    assert (counts > 0).all()
    assert 0.5 < counts[0] / counts.sum() < 0.95  # mostly background, but shapes are not rare


def test_a_lone_disc_is_round_and_a_lone_square_has_its_area():
    """Kinds are drawn as their names say: compare the labelled area with pi r^2, 2 r^2, (3 sqrt 3 / 4) r^2."""
    spec = ShapesSpec(size=64, max_shapes=1, min_radius=12, max_radius=12, noise=0.0)
    areas = {1: np.pi * 144, 2: 2 * 144, 3: 3 * np.sqrt(3) / 4 * 144}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        _, labels = draw_image(spec, rng)
        kind = int(labels.max())
        area = (labels == kind).sum()
        if area and not (labels[0].any() or labels[-1].any() or labels[:, 0].any() or labels[:, -1].any()):
            assert area == pytest.approx(areas[kind], rel=0.12)
            seen.add(kind)
    assert seen == {1, 2, 3}


def test_shapes_contrast_with_their_surroundings():
    """Inside a shape the mean colour differs from the surrounding background (min_contrast minus noise)."""
    spec = ShapesSpec(max_shapes=1, noise=0.0, texture=0.0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        image, labels = draw_image(spec, rng)
        inside, outside = image[:, labels > 0].mean(axis=1), image[:, labels == 0].mean(axis=1)
        assert np.abs(inside - outside).max() >= spec.min_contrast - 1e-6 or (labels > 0).sum() == 0


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="channels"):
        ShapesSpec(channels=2)
    with pytest.raises(ValueError, match="max_radius"):
        ShapesSpec(size=16, max_radius=9.0)
    with pytest.raises(ValueError, match="n must"):
        shapes_batch(-1, np.random.default_rng(0))
