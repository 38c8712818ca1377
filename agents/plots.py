"""Value maps of gridworld results (``V`` as colour, the greedy policy as arrows, cell kinds and a path), and
learning curves over seeds with their confidence bands.

Single learning curves and saving live in the one figure helper, :mod:`envs.io.figures`; like it, this uses
matplotlib's object-oriented API only (``Figure``, never ``pyplot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import matplotlib as mpl
import numpy as np
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from envs.gridworld import ACTION_DELTAS
from envs.io.figures import wrap_title

if TYPE_CHECKING:
    from agents.curves import Band

WALL_COLOR = "#2b2b2b"
"""Dark neutral grey for cells that are not states (NaN in ``V``)."""

MAX_ANNOTATED_CELLS = 150
"""Default limit for writing values into cells."""

MAX_DETAILED_CELLS = 2500
"""Above this many cells, neither arrows nor values are drawn: they would be unreadable."""

TITLE_SIZE = 11.0
"""Font size of the title, points; a title wider than the figure is wrapped onto more lines."""


class CellLabel(NamedTuple):
    """How one kind of labelled cell is drawn: a hatch over the cell and a letter in its corner."""

    name: str
    """Legend text."""
    hatch: str
    """Matplotlib hatch pattern ('' for none)."""
    colour: str
    """Colour of the hatch, the outline and the letter."""
    letter: bool = True
    """Whether the cell gets its letter and outline (walls need neither: they are already :data:`WALL_COLOR`)."""


CELL_LABELS: dict[str, CellLabel] = {
    "S": CellLabel("start", "", "white"),
    "G": CellLabel("goal", "", "gold"),
    "H": CellLabel("hole", "x", "white"),
    "C": CellLabel("cliff", "//", "tomato"),
    "#": CellLabel("wall", "", WALL_COLOR, letter=False),
}
"""The map characters :func:`value_heatmap` marks when given ``labels`` (those of :mod:`envs.grid_map`)."""


def value_heatmap(
    V: np.ndarray,
    policy: np.ndarray | None = None,
    *,
    action_deltas: np.ndarray | None = None,
    path: Sequence[tuple[int, int]] | np.ndarray | None = None,
    title: str = "",
    annotate: bool | None = None,
    labels: np.ndarray | Sequence[str] | None = None,
) -> Figure:
    """Draw a state-value grid V [nrow, ncol] (NaN = wall) with optional greedy arrows and a path.

    ``policy`` int [nrow, ncol] gives the action per cell, -1 for no arrow; ``action_deltas``
    [A, 2] maps actions to (drow, dcol) and defaults to :data:`envs.gridworld.ACTION_DELTAS`.
    ``path`` is a sequence of (row, col) cells drawn as a line from a circle (start) to a star
    (end). ``labels`` [nrow, ncol] of map characters (a char array such as ``env.grid.cells`` or
    the rows as strings) marks the cells of :data:`CELL_LABELS` (start, goal, hole, cliff, wall)
    with a letter and a hatch, so that a goal and a hole of equal value look different; other
    characters are left plain. A legend names the marked kinds and the path's line, start and end.
    ``annotate`` writes values into cells and defaults to grids of at most
    :data:`MAX_ANNOTATED_CELLS` cells. Grids larger than :data:`MAX_DETAILED_CELLS` get neither
    arrows, values nor letters. A long ``title`` is wrapped to the figure's width.
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"V must be 2-D [nrow, ncol], got shape {V.shape}")
    kinds = _label_grid(labels, V.shape) if labels is not None else None
    detailed = V.size <= MAX_DETAILED_CELLS
    annotate = (V.size <= MAX_ANNOTATED_CELLS if annotate is None else annotate) and detailed
    cell = _cell_inches(V.shape)
    width = V.shape[1] * cell + 1.4
    title = wrap_title(title, width, TITLE_SIZE)
    height = V.shape[0] * cell + (0.5 + 0.22 * (title.count("\n") + 1) if title else 0.5)
    fig = Figure(figsize=(width, height), layout="compressed")
    ax = fig.add_subplot()
    cmap, norm = _draw_values(fig, ax, V)
    show_arrows = policy is not None and detailed
    if annotate:
        _annotate(ax, V, cmap, norm, cell, top=show_arrows)
    if show_arrows:
        assert policy is not None
        _draw_policy(ax, V.shape, policy, ACTION_DELTAS if action_deltas is None else action_deltas, annotate)
    handles: list[Artist] = []
    if kinds is not None and detailed:
        handles += _draw_labels(ax, kinds, cell)
    if path is not None:
        handles += _draw_path(ax, path)
    if handles:  # below the grid, as many entries a row as the width holds (about 1.2 inches each)
        ncols = max(1, min(len(handles), int(width / 1.2)))
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
        fig.set_figheight(height + 0.1 + 0.25 * -(-len(handles) // ncols))
    if title:  # centred on the figure, which is wider than the axes, and wrapped to fit it
        fig.suptitle(title, fontsize=TITLE_SIZE)
    return fig


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


def _draw_path(ax: Axes, path: Sequence[tuple[int, int]] | np.ndarray) -> list[Artist]:
    """Draw the (row, col) cells of ``path`` [L, 2] as a line from a circle to a star; return the legend handles."""
    cells = np.asarray(path, dtype=np.float64)
    if cells.size == 0:
        return []
    if cells.ndim != 2 or cells.shape[1] != 2:
        raise ValueError(f"path must be a sequence of (row, col) cells [L, 2], got shape {cells.shape}")
    (line,) = ax.plot(cells[:, 1], cells[:, 0], color="tab:red", linewidth=2.0, alpha=0.8, label="path")
    (start,) = ax.plot(cells[0, 1], cells[0, 0], "o", color="tab:red", markersize=6, linestyle="none", label="path start")
    (end,) = ax.plot(cells[-1, 1], cells[-1, 0], "*", color="tab:red", markersize=10, linestyle="none", label="path end")
    return [line, start, end]


def _label_grid(labels: np.ndarray | Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
    """``labels`` as a ``[nrow, ncol]`` array of single characters; ``ValueError`` unless it has V's shape."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        grid = labels.astype(str)
    else:  # rows, each a string or a sequence of characters
        rows = [list(r) if isinstance(r, str) else [str(ch) for ch in r] for r in labels]
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"labels must be [nrow, ncol] characters or equal-length rows, got row lengths {[len(r) for r in rows]}")
        grid = np.array(rows, dtype=str).reshape(len(rows), -1)
    if grid.shape != shape:
        raise ValueError(f"labels must have the shape of V {shape}, got {grid.shape}")
    return grid


def _draw_labels(ax: Axes, kinds: np.ndarray, cell: float) -> list[Artist]:
    """Hatch each cell of a kind in :data:`CELL_LABELS` and write its letter in the bottom-left corner
    (values sit at the top, arrows in the middle);
    return one legend handle per kind present."""
    size = float(np.clip(cell * 72 * 0.25, 5.0, 9.0))
    outline = [patheffects.withStroke(linewidth=1.5, foreground="black")]
    handles: list[Artist] = []
    for letter, style in CELL_LABELS.items():
        rows, cols = np.nonzero(kinds == letter)
        if rows.size == 0:
            continue
        for r, c in zip(rows.tolist(), cols.tolist()) if style.letter else ():
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1.0, 1.0, fill=False, hatch=style.hatch or None,
                                   edgecolor=style.colour, linewidth=1.2, zorder=2))
            ax.text(c - 0.44, r + 0.44, letter, ha="left", va="bottom", fontsize=size, fontweight="bold",
                    color=style.colour, path_effects=outline, zorder=3)
        if style.letter:
            handles.append(Patch(facecolor="none", edgecolor=style.colour if style.colour != "white" else "black",
                                 hatch=style.hatch or None, label=f"{letter} {style.name}"))
        else:
            handles.append(Patch(facecolor=style.colour, edgecolor="none", label=style.name))
    return handles


def _format_value(v: float) -> str:
    """Short text for a value: two decimals below 10, fewer above."""
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def band_curves(bands: Mapping[str, Band], *, xlabel: str = "environment steps", ylabel: str = "return",
                title: str = "", confidence: float = 0.95) -> Figure:
    """One line per entry of ``bands`` (the mean over its seeds) with its confidence band shaded.

    The legend names each entry and its number of seeds; an entry of one seed is drawn without a band.
    """
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, b) in enumerate(bands.items()):
        colour = f"C{i % 10}"
        x, mean = np.asarray(b.x, dtype=np.float64), np.asarray(b.mean, dtype=np.float64)
        if x.ndim != 1 or x.shape != mean.shape or len(x) == 0:
            raise ValueError(f"band {name!r}: x and mean must be non-empty [P] arrays, got {x.shape} and {mean.shape}")
        label = f"{name} ({b.seeds} seed{'s' if b.seeds != 1 else ''})"
        ax.plot(x, mean, color=colour, linewidth=2.0, label=label, marker="o" if len(x) <= 30 else None, markersize=3)
        if b.seeds > 1:
            ax.fill_between(x, b.low, b.high, color=colour, alpha=0.2, linewidth=0)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if any(b.seeds > 1 for b in bands.values()):
        title = f"{title}\n" if title else ""
        title += f"mean over seeds, shaded: {100 * confidence:g}% bootstrap confidence interval"
    ax.set_title(wrap_title(title, 7.5), fontsize=10)
    if bands:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig
