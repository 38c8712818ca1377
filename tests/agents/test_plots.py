"""Tests for agents.plots: moving average, heatmap contents, learning curves, PNG output."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver

from agents.plots import WALL_COLOR, learning_curves, moving_average, save_figure, value_heatmap


def quivers(fig: Figure) -> list[Quiver]:
    return [c for c in fig.axes[0].collections if isinstance(c, Quiver)]


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


def test_heatmap_one_arrow_per_policy_cell_pointing_along_action() -> None:
    V = np.arange(12, dtype=float).reshape(3, 4)
    V[1, 1] = np.nan
    policy = np.array([[0, 1, 2, 3], [1, -1, -1, 2], [3, 3, -1, 0]])
    fig = value_heatmap(V, policy)
    (quiver,) = quivers(fig)
    # Arrows may sit a little below the cell centre to make room for the value text.
    offsets = {(round(x), round(y)) for x, y in quiver.get_offsets()}
    rows, cols = np.nonzero(policy >= 0)
    assert len(quiver.get_offsets()) == len(rows) == 9
    assert offsets == {(c, r) for r, c in zip(rows, cols, strict=True)}
    # (U, V) is (dcol, drow): left, down, right, up for actions 0..3.
    expected = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}
    for (x, y), u, v in zip(quiver.get_offsets(), quiver.U, quiver.V, strict=True):
        direction = expected[policy[int(round(y)), int(x)]]
        assert np.sign([u, v]).tolist() == list(direction)


def test_heatmap_custom_action_deltas_and_bad_policy() -> None:
    V = np.zeros((2, 2))
    fig = value_heatmap(V, np.zeros((2, 2), dtype=int), action_deltas=np.array([[1.0, 1.0]]))
    (quiver,) = quivers(fig)
    assert np.all(np.asarray(quiver.U) > 0) and np.all(np.asarray(quiver.V) > 0)
    with pytest.raises(ValueError, match="policy entries"):
        value_heatmap(V, np.full((2, 2), 4))
    with pytest.raises(ValueError, match=r"policy must have the shape of V \(2, 2\)"):
        value_heatmap(V, np.zeros((3, 2), dtype=int))


def test_heatmap_masks_nan_cells_in_wall_colour() -> None:
    V = np.linspace(0.0, 1.0, 20).reshape(4, 5)
    V[2, 3] = np.nan
    fig = value_heatmap(V, annotate=False)
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    assert np.ma.getmaskarray(data).sum() == 1 and np.ma.getmaskarray(data)[2, 3]

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]

    def colour_at(r: int, c: int) -> np.ndarray:
        x, y = ax.transData.transform((c + 0.2, r + 0.2))  # off the cell centre, away from grid lines
        return pixels[pixels.shape[0] - int(round(y)), int(round(x))].astype(int)

    wall = np.array(mcolors.to_rgb(WALL_COLOR)) * 255
    np.testing.assert_allclose(colour_at(2, 3), wall, atol=3)
    assert np.abs(colour_at(2, 2) - wall).max() > 40


def test_heatmap_annotation_default_and_large_grid_has_no_detail() -> None:
    small = np.random.default_rng(1).normal(size=(8, 8))
    small[0, 0] = np.nan
    assert len(value_heatmap(small).axes[0].texts) == 63  # one per finite cell
    assert len(value_heatmap(np.zeros((13, 13))).axes[0].texts) == 0  # 169 > 150 cells
    assert len(value_heatmap(np.zeros((13, 13)), annotate=True).axes[0].texts) == 169

    big = value_heatmap(np.zeros((101, 101)), np.zeros((101, 101), dtype=int), annotate=True)
    assert quivers(big) == [] and len(big.axes[0].texts) == 0
    assert max(big.get_size_inches()) <= 12


def test_heatmap_size_follows_grid_shape() -> None:
    wide = value_heatmap(np.zeros((4, 12))).get_size_inches()
    square = value_heatmap(np.zeros((8, 8))).get_size_inches()
    assert wide[0] > 2 * wide[1]
    assert square[0] == pytest.approx(square[1], abs=1.5)


def test_heatmap_draws_path_through_cells() -> None:
    path = [(3, 0), (2, 0), (2, 1), (2, 2)]
    fig = value_heatmap(np.zeros((4, 4)), path=path)
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0, 0, 1, 2])
    np.testing.assert_array_equal(line.get_ydata(), [3, 2, 2, 2])
    with pytest.raises(ValueError, match="path"):
        value_heatmap(np.zeros((4, 4)), path=[1, 2, 3])


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
    fig = value_heatmap(np.zeros((4, 12)), np.ones((4, 12), dtype=int), title="cliff")
    width, height = fig.get_size_inches()
    out = save_figure(fig, tmp_path / "plots" / "v.png", dpi=50)
    assert out == tmp_path / "plots" / "v.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imageio.imread(out)
    assert image.shape[:2] == (round(height * 50), round(width * 50))
    assert image.std() > 0  # not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["v.png"]
