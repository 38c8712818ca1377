"""Procedural pen strokes in the stroke-3 format (notes §7.6): offsets integrate back to the drawn polylines,
pen lifts separate the strokes of a glyph, points are evenly spaced, and the split is fixed and seeded."""

import numpy as np
import pytest

from generative.data.strokes import (
    DIGIT_STROKES,
    KINDS,
    points_per_stroke,
    random_drawing,
    random_drawings,
    resample,
    strokes_split,
    strokes_to_polylines,
    to_stroke3,
)


def test_resample_is_even_by_arc_length():
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    points = resample(square, 5)
    assert points == pytest.approx(np.array([[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1]]))
    with pytest.raises(ValueError, match="stroke must be"):
        resample(square[:1], 4)


def test_points_per_stroke_split_t_in_proportion():
    counts = points_per_stroke(np.array([1.0, 3.0]), 22)
    assert counts.sum() == 22 and counts.tolist() == [7, 15]
    assert points_per_stroke(np.array([0.0, 5.0, 0.0]), 6).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="T must be"):
        points_per_stroke(np.ones(3), 5)


def test_stroke3_round_trip_to_polylines():
    strokes = [np.array([[1.0, 1.0], [3.0, 1.0]]), np.array([[2.0, 3.0], [2.0, 0.0], [2.0, -1.0]])]
    drawing = to_stroke3(strokes, 10)
    assert drawing.shape == (10, 3) and drawing.dtype == np.float32
    assert drawing[0].tolist() == [0.0, 0.0, 0.0]  # drawings start at the origin
    assert drawing[:, 2].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]  # 2 + 6 * (2 : 4) -> 4 and 6 points
    lines = strokes_to_polylines(drawing)
    assert [len(line) for line in lines] == [4, 6]
    assert lines[0] + [1.0, 1.0] == pytest.approx(np.array([[1, 1], [5 / 3, 1], [7 / 3, 1], [3, 1]]))
    assert lines[1][[0, -1]] + [1.0, 1.0] == pytest.approx(np.array([[2, 3], [2, -1]]))
    with pytest.raises(ValueError, match="drawing must be"):
        strokes_to_polylines(np.zeros((4, 2)))


def test_glyphs_have_their_strokes_and_kinds_their_labels():
    rng = np.random.default_rng(0)
    for digit in range(10):
        drawing, label = random_drawing(40, np.random.default_rng(digit), "glyph")
        while label != digit:  # draw until this digit comes up
            drawing, label = random_drawing(40, rng, "glyph")
        assert drawing[:, 2].sum() == len(DIGIT_STROKES[digit]) and drawing[-1, 2] == 1
        assert len(strokes_to_polylines(drawing)) == len(DIGIT_STROKES[digit])
    for kind, label in (("curve", 10), ("loop", 11)):
        drawing, got = random_drawing(30, rng, kind)
        assert got == label and drawing[:, 2].tolist() == [0] * 29 + [1]  # one stroke
        steps = np.linalg.norm(drawing[1:, :2], axis=1)
        assert 0.2 < np.median(steps) < 3.0 and steps.max() < 4 * np.median(steps) + 0.5  # evenly spaced


def test_drawings_are_seeded_and_the_split_is_fixed():
    x, y = random_drawings(20, 32, np.random.default_rng(3))
    x2, y2 = random_drawings(20, 32, np.random.default_rng(3))
    assert x.shape == (20, 32, 3) and y.shape == (20,) and np.array_equal(x, x2) and np.array_equal(y, y2)
    assert set(np.unique(x[:, :, 2])) <= {0.0, 1.0} and np.all(x[:, -1, 2] == 1)
    a, b, c = strokes_split(16, 4, 8, 24, seed=0), strokes_split(16, 4, 8, 24, seed=0), strokes_split(16, 4, 8, 24, 1)
    assert a.train.shape == (16, 24, 3) and a.val.shape == (4, 24, 3) and a.test.shape == (8, 24, 3)
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)
    assert np.array_equal(a.test, c.test) and np.array_equal(a.y_test, c.y_test)
    big = strokes_split(300, 0, 0, 40)
    assert set(np.unique(big.y_train)) == set(range(12)) and len(KINDS) == 3
    assert 0.5 < big.train[:, 1:, :2].std() < 2.0  # offsets of order one
    with pytest.raises(ValueError, match="kind"):
        random_drawing(20, np.random.default_rng(0), "spiral")  # type: ignore[arg-type]
