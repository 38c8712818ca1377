"""The adding problem and the copy task: exactly two markers, targets, the 1/6 baseline, seeding."""

import numpy as np
import pytest

from generative.data.sequences import (
    BASELINE_MSE,
    adding_problem,
    adding_test_set,
    baseline_mse,
    copy_baseline_cross_entropy,
    copy_task,
)


@pytest.mark.parametrize("placement", ["halves", "anywhere"])
def test_exactly_two_markers_and_the_target_is_their_sum(placement):
    T = 50
    batch = adding_problem(500, T, np.random.default_rng(0), placement)
    assert batch.x.shape == (500, T, 2) and batch.y.shape == (500,)
    values, markers = batch.x[..., 0], batch.x[..., 1]
    assert (markers.sum(axis=1) == 2).all() and set(np.unique(markers)) == {0.0, 1.0}
    assert np.allclose(batch.y, (values * markers).sum(axis=1), atol=1e-6)
    assert values.min() >= 0.0 and values.max() <= 1.0
    first = markers.argmax(axis=1)
    last = T - 1 - markers[:, ::-1].argmax(axis=1)
    if placement == "halves":
        assert (first < T // 2).all() and (last >= T // 2).all()
    else:
        assert (first < T // 2).any() and (first >= T // 2).any() and (last < T // 2).any()


def test_baseline_is_one_sixth():
    batch = adding_problem(200_000, 60, np.random.default_rng(1))
    assert float(batch.y.mean()) == pytest.approx(1.0, abs=0.01)
    assert baseline_mse(batch.y) == pytest.approx(BASELINE_MSE, rel=0.02)
    assert BASELINE_MSE == pytest.approx(0.1667, abs=1e-4)


def test_seeding_and_fixed_test_set():
    a = adding_problem(10, 50, np.random.default_rng(5))
    b = adding_problem(10, 50, np.random.default_rng(5))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert np.array_equal(adding_test_set(50, 100).x, adding_test_set(50, 100).x)
    assert adding_test_set(50, 100).x.shape == (100, 50, 2)
    with pytest.raises(ValueError, match="T"):
        adding_problem(4, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="placement"):
        adding_problem(4, 10, np.random.default_rng(0), "middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y must"):
        baseline_mse(np.zeros((2, 2)))


def test_copy_task_repeats_the_symbols_after_the_go_marker():
    batch = copy_task(5, length=4, delay=10, rng=np.random.default_rng(0), n_symbols=6)
    assert batch.x.shape == batch.y.shape == (5, 18)
    assert np.array_equal(batch.y[:, -4:], batch.x[:, :4])
    assert (batch.x[:, 14] == 7).all() and (batch.x[:, 4:14] == 0).all()
    assert (batch.y[:, :14] == 0).all()
    assert copy_baseline_cross_entropy(4, 10, 6) == pytest.approx(4 * np.log(6) / 18)
