"""The one figure helper (envs/io/figures.py): moving averages, learning curves, image grids, PNG output."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from matplotlib.figure import Figure

from envs.io.figures import image_grid, learning_curves, moving_average, save_figure, wrap_title


def test_moving_average_hand_example() -> None:
    x = np.array([1.0, 2.0, 6.0, 3.0, 8.0])
    np.testing.assert_allclose(moving_average(x, 2), [1.5, 4.0, 4.5, 5.5])
    np.testing.assert_allclose(moving_average(x, 3), [3.0, 11 / 3, 17 / 3])
    np.testing.assert_allclose(moving_average(x, 1), x)
    np.testing.assert_allclose(moving_average(x, 5), [4.0])


def test_moving_average_matches_loop() -> None:
    x = np.random.default_rng(0).normal(size=57)
    slow = [x[j : j + 10].mean() for j in range(len(x) - 9)]
    np.testing.assert_allclose(moving_average(x, 10), slow)


@pytest.mark.parametrize("window", [0, 6])
def test_moving_average_rejects_bad_window(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        moving_average(np.ones(5), window)


def test_learning_curves_raw_and_aligned_average() -> None:
    a = np.arange(30, dtype=float) ** 0.5
    b = np.random.default_rng(2).normal(size=12)
    fig = learning_curves({"q-learning": a, "sarsa": b}, window=5, ylim=(-3, 6))
    ax = fig.axes[0]
    raw_a, avg_a, raw_b, avg_b = ax.lines
    np.testing.assert_array_equal(raw_a.get_ydata(), a)
    np.testing.assert_array_equal(avg_a.get_xdata(), np.arange(4, 30))
    np.testing.assert_allclose(avg_a.get_ydata(), moving_average(a, 5))
    assert avg_a.get_ydata()[0] == pytest.approx(a[:5].mean())
    assert raw_a.get_color() == avg_a.get_color() != avg_b.get_color() == raw_b.get_color()
    assert raw_a.get_alpha() < 0.5 and avg_a.get_linewidth() > raw_a.get_linewidth()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["q-learning", "sarsa"]
    assert ax.get_ylim() == (-3, 6)


def test_learning_curves_short_curve_uses_its_length() -> None:
    ax = learning_curves({"short": np.array([1.0, 3.0])}, window=20).axes[0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [2.0])
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1])


def test_save_figure_writes_png_of_expected_size(tmp_path: Path) -> None:
    fig = Figure(figsize=(6.0, 2.5))
    fig.add_subplot().imshow(np.arange(48.0).reshape(4, 12))
    width, height = fig.get_size_inches()
    out = save_figure(fig, tmp_path / "plots" / "v.png", dpi=50)
    assert out == tmp_path / "plots" / "v.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imageio.imread(out)
    assert image.shape[:2] == (round(height * 50), round(width * 50))
    assert image.std() > 0  # not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["v.png"]





def test_curves_against_environment_steps_and_a_grid_of_images(tmp_path: Path) -> None:
    ax = learning_curves({"eval": ([2500, 5000, 7500], [10.0, 50.0, 200.0])}, window=1).axes[0]
    (line,) = [l for l in ax.get_lines() if l.get_label() == "eval"]
    np.testing.assert_array_equal(line.get_xdata(), [2500, 5000, 7500])  # x is steps, not evaluation indices
    fig = image_grid([np.zeros((4, 4)), np.ones((4, 4, 3))], ["a", "b"], columns=2, title="t" * 200)
    assert [a.get_title() for a in fig.axes[:2]] == ["a", "b"]
    assert save_figure(fig, tmp_path / "g.png").stat().st_size > 0
    with pytest.raises(ValueError, match="one entry per image"):
        image_grid([np.zeros((2, 2))], ["a", "b"])
    assert max(len(line) for line in wrap_title("word " * 60, 4.0).splitlines()) < 40
