"""Tests for agents.plots: moving average, heatmap contents, learning curves, PNG output."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.quiver import Quiver
from matplotlib.text import Text

from agents.plots import CELL_LABELS, WALL_COLOR, value_heatmap


def quivers(fig: Figure) -> list[Quiver]:
    return [c for c in fig.axes[0].collections if isinstance(c, Quiver)]


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
        direction = expected[policy[round(y), int(x)]]
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
        return pixels[pixels.shape[0] - round(y), round(x)].astype(int)

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


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# ---------------------------------------------------------------------- labels, legend, titles
LAKE = ["S..H", ".H..", "...G"]


def test_labels_mark_goal_hole_cliff_and_start_differently() -> None:
    V = np.zeros((3, 4))  # goal and holes are terminal: the same value 0 everywhere, told apart only by labels
    fig = value_heatmap(V, labels=LAKE, annotate=False)
    ax = fig.axes[0]
    letters = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert letters == {(0, 0): "S", (0, 3): "H", (1, 1): "H", (2, 3): "G"}
    marks = {(round(r.get_y() + 0.5), round(r.get_x() + 0.5)): (r.get_hatch(), mcolors.to_hex(r.get_edgecolor()))
             for r in ax.patches if isinstance(r, Rectangle)}
    assert marks[(0, 3)] == marks[(1, 1)] != marks[(2, 3)] != marks[(0, 0)] != marks[(0, 3)]
    assert marks[(0, 3)][0] == CELL_LABELS["H"].hatch and marks[(2, 3)][0] is None  # the hole is hatched
    assert legend_texts(fig) == ["S start", "G goal", "H hole"]
    assert len(value_heatmap(V, labels=np.array([list(r) for r in LAKE]), annotate=False).axes[0].texts) == 4  # chars


def test_walls_and_cliffs_in_the_legend_and_unknown_characters_left_plain() -> None:
    V = np.zeros((2, 4))
    V[1, 1:3] = np.nan  # cliff cells are not states: NaN like walls
    fig = value_heatmap(V, labels=["S#.1", "CC.G"], annotate=False)
    assert legend_texts(fig) == ["S start", "G goal", "C cliff", "wall"]
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["C", "C", "G", "S"]  # walls keep their colour only


def test_path_start_and_end_have_a_legend() -> None:
    fig = value_heatmap(np.zeros((4, 4)), path=[(3, 0), (2, 0), (2, 1)], labels=["....", "....", "...G", "S..."])
    assert legend_texts(fig) == ["S start", "G goal", "path", "path start", "path end"]
    assert legend_texts(value_heatmap(np.zeros((4, 4)), path=[(3, 0), (2, 0)])) == ["path", "path start", "path end"]
    assert value_heatmap(np.zeros((4, 4))).legends == []  # nothing to explain, no legend


def test_bad_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"labels must have the shape of V \(3, 4\), got \(2, 4\)"):
        value_heatmap(np.zeros((3, 4)), labels=LAKE[:2])
    with pytest.raises(ValueError, match="equal-length rows"):
        value_heatmap(np.zeros((3, 4)), labels=["S..", ".H..", "...G"])


@pytest.mark.parametrize("shape", [(3, 2), (4, 4), (4, 12), (30, 30)])
def test_long_titles_wrap_and_legends_stay_inside_the_figure(shape: tuple[int, int]) -> None:
    title = "mp/CliffWalking-v0: V* and greedy policy (value-iteration, gamma=1, 15 iterations) " * 2
    labels = np.full(shape, ".")
    labels[0, 0], labels[-1, -1], labels[1, 0], labels[2, -1] = "S", "G", "H", "C"  # six legend entries with the path
    fig = value_heatmap(np.zeros(shape), path=[(0, 0), (1, 0)], labels=labels, title=title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    figure_box = fig.bbox
    (text,) = [t for t in fig.findobj(Text) if t.get_text().startswith("mp/CliffWalking")]
    box = text.get_window_extent(renderer)
    assert "\n" in text.get_text() and text.get_text().replace("\n", " ").split() == title.split()
    assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and box.y1 <= figure_box.y1
    legend = fig.legends[0].get_window_extent(renderer)
    assert figure_box.x0 <= legend.x0 and legend.x1 <= figure_box.x1 and legend.y0 >= figure_box.y0
    assert not legend.overlaps(fig.axes[0].get_window_extent(renderer))


def test_band_curves_shade_only_entries_with_several_seeds() -> None:
    from agents.curves import Band
    from agents.plots import band_curves

    x = np.arange(4.0)
    fig = band_curves({"a": Band(x, x, x - 1, x + 1, 3), "b": Band(x, 2 * x, 2 * x, 2 * x, 1)}, title="t")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # one band: b has a single seed
    np.testing.assert_allclose(ax.collections[0].get_paths()[0].vertices[:, 1].min(), -1.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (3 seeds)", "b (1 seed)"]
    assert "95% bootstrap confidence interval" in ax.get_title()
    with pytest.raises(ValueError, match="band 'c'"):
        band_curves({"c": Band(x, x[:2], x, x, 2)})
