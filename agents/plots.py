"""Pictures of tabular RL results: value heatmaps with policy arrows, and learning curves.

Only matplotlib's object-oriented API is used (``Figure``, never ``pyplot``), so nothing depends on
a GUI backend and figures are garbage-collected like any other object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from envs.io import atomic_path

GRID_ACTION_DELTAS = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], dtype=np.float64)
"""[4, 2] (drow, dcol) of the gridworld actions 0 left, 1 down, 2 right, 3 up."""

WALL_COLOR = "#2b2b2b"
"""Dark neutral grey for cells that are not states (NaN in ``V``)."""

MAX_ANNOTATED_CELLS = 150
"""Default limit for writing values into cells."""

MAX_DETAILED_CELLS = 2500
"""Above this many cells, neither arrows nor values are drawn: they would be unreadable."""


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values of x [N]; returns [N - window + 1].

    Entry ``j`` averages ``x[j : j + window]``, so it belongs to index ``j + window - 1``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D [N], got shape {x.shape}")
    if not 1 <= window <= len(x):
        raise ValueError(f"window must be in [1, {len(x)}] for x of shape {x.shape}, got {window}")
    csum = np.concatenate([[0.0], np.cumsum(x)])
    return (csum[window:] - csum[:-window]) / window


def value_heatmap(
    V: np.ndarray,
    policy: np.ndarray | None = None,
    *,
    action_deltas: np.ndarray | None = None,
    path: Sequence[tuple[int, int]] | np.ndarray | None = None,
    title: str = "",
    annotate: bool | None = None,
) -> Figure:
    """Draw a state-value grid V [nrow, ncol] (NaN = wall) with optional greedy arrows and a path.

    ``policy`` int [nrow, ncol] gives the action per cell, -1 for no arrow; ``action_deltas``
    [A, 2] maps actions to (drow, dcol) and defaults to :data:`GRID_ACTION_DELTAS`. ``path`` is a
    sequence of (row, col) cells drawn as a line. ``annotate`` writes values into cells and
    defaults to grids of at most :data:`MAX_ANNOTATED_CELLS` cells. Grids larger than
    :data:`MAX_DETAILED_CELLS` get neither arrows nor values.
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"V must be 2-D [nrow, ncol], got shape {V.shape}")
    detailed = V.size <= MAX_DETAILED_CELLS
    annotate = (V.size <= MAX_ANNOTATED_CELLS if annotate is None else annotate) and detailed
    cell = _cell_inches(V.shape)
    fig = Figure(figsize=(V.shape[1] * cell + 1.4, V.shape[0] * cell + (0.9 if title else 0.5)), layout="compressed")
    ax = fig.add_subplot()
    cmap, norm = _draw_values(fig, ax, V)
    show_arrows = policy is not None and detailed
    if annotate:
        _annotate(ax, V, cmap, norm, cell, top=show_arrows)
    if show_arrows:
        assert policy is not None
        _draw_policy(ax, V.shape, policy, GRID_ACTION_DELTAS if action_deltas is None else action_deltas, annotate)
    if path is not None:
        _draw_path(ax, path)
    ax.set_title(title)
    return fig


def learning_curves(
    curves: Mapping[str, np.ndarray],
    *,
    window: int = 20,
    xlabel: str = "episode",
    ylabel: str = "return",
    title: str = "",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Plot each curve [N] faint and its ``window``-episode moving average bold, one colour each.

    The average over episodes ``i - window + 1 .. i`` is drawn at episode ``i``; a curve shorter
    than ``window`` is averaged over its whole length.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(curves.items()):
        y = np.asarray(values, dtype=np.float64)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"curve {name!r} must be a non-empty 1-D array [N], got shape {y.shape}")
        w = min(window, len(y))
        color = f"C{i % 10}"
        ax.plot(np.arange(len(y)), y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(np.arange(w - 1, len(y)), moving_average(y, w), color=color, linewidth=2.0, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(ylim)
    if curves:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG of ``figsize * dpi`` pixels to ``path`` atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _cell_inches(shape: tuple[int, ...]) -> float:
    """Side of one cell in inches: 0.6 for small grids, shrinking so the longer side is <= 9."""
    return min(0.6, 9.0 / max(shape))


def _draw_values(fig: Figure, ax: Axes, V: np.ndarray) -> tuple[Colormap, Normalize]:
    """Show V as an image with NaN cells in :data:`WALL_COLOR`, plus a colour bar."""
    cmap = mpl.colormaps["viridis"].with_extremes(bad=WALL_COLOR)
    finite = V[np.isfinite(V)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    image = ax.imshow(np.ma.masked_invalid(V), cmap=cmap, norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=min(1.0, 0.4 + V.shape[0] / V.shape[1]), label="V(s)")
    ax.set_xticks([])
    ax.set_yticks([])
    if V.size <= MAX_DETAILED_CELLS:  # thin cell borders; they would merge into a grey blur beyond
        ax.set_xticks(np.arange(-0.5, V.shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, V.shape[0]), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5, alpha=0.4)
        ax.tick_params(which="minor", length=0)
    return cmap, norm


def _annotate(ax: Axes, V: np.ndarray, cmap: Colormap, norm: Normalize, cell: float, top: bool) -> None:
    """Write each finite value into its cell, in black or white to contrast with the cell colour."""
    size = float(np.clip(cell * 72 * (0.22 if top else 0.28), 4.0, 9.0))
    for r, c in zip(*np.nonzero(np.isfinite(V)), strict=True):
        red, green, blue, _ = cmap(norm(V[r, c]))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        y = r - 0.28 if top else r  # leave the lower part of the cell to the arrow
        ax.text(c, y, _format_value(V[r, c]), ha="center", va="center", fontsize=size, color=ink)


def _draw_policy(
    ax: Axes, shape: tuple[int, ...], policy: np.ndarray, action_deltas: np.ndarray, below_text: bool
) -> None:
    """One arrow per cell with ``policy >= 0``, pointing along that action's (drow, dcol)."""
    policy = np.asarray(policy)
    deltas = np.asarray(action_deltas, dtype=np.float64)
    if policy.shape != shape:
        raise ValueError(f"policy must have the shape of V {shape}, got {policy.shape}")
    if deltas.ndim != 2 or deltas.shape[1] != 2:
        raise ValueError(f"action_deltas must be [A, 2] (drow, dcol), got shape {deltas.shape}")
    if policy.max(initial=-1) >= len(deltas) or policy.min(initial=-1) < -1:
        raise ValueError(f"policy entries must be -1 or in [0, {len(deltas)}), got {policy.min()}..{policy.max()}")
    rows, cols = np.nonzero(policy >= 0)
    d = deltas[policy[rows, cols]]
    length = 0.4 if below_text else 0.6
    d = length * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    offset = 0.15 if below_text else 0.0
    # The image axis points down (origin="upper"), so data-space drow is screen-space "down".
    ax.quiver(
        cols, rows + offset, d[:, 1], d[:, 0],
        angles="xy", scale_units="xy", scale=1.0, pivot="middle",
        units="xy", width=0.07, headwidth=3.5, headlength=3.5, headaxislength=3.0,
        color="white", edgecolor="black", linewidth=0.5,
    )


def _draw_path(ax: Axes, path: Sequence[tuple[int, int]] | np.ndarray) -> None:
    """Draw the (row, col) cells of ``path`` [L, 2] as a line from a circle to a star."""
    cells = np.asarray(path, dtype=np.float64)
    if cells.size == 0:
        return
    if cells.ndim != 2 or cells.shape[1] != 2:
        raise ValueError(f"path must be a sequence of (row, col) cells [L, 2], got shape {cells.shape}")
    ax.plot(cells[:, 1], cells[:, 0], color="tab:red", linewidth=2.0, alpha=0.8)
    ax.plot(cells[0, 1], cells[0, 0], "o", color="tab:red", markersize=6)
    ax.plot(cells[-1, 1], cells[-1, 0], "*", color="tab:red", markersize=10)


def _format_value(v: float) -> str:
    """Short text for a value: two decimals below 10, fewer above."""
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
